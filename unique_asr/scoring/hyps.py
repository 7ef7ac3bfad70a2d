"""The files decoding hands to scoring, one pair per test set and setting.

hyps-<set>-<tag>.jsonl  one JSON object per recording: id, ref (raw reference text), ref_turns
                        ([speaker, text] of its supervisions in time order, for errors by
                        speaker; optional), hyp (raw hypothesis), duration (s), segments
                        (pieces it was decoded in), tokens
meta-<set>-<tag>.json   the run: model, checkpoint, attention, budget, decoding method, speed
                        (see scoring.speed.Speed), skipped recordings, the command line
Texts are stored raw; scoring normalises them, so a normaliser fix needs no re-decode.
"""

from __future__ import annotations

import json
from pathlib import Path


def hyps_path(out_dir: str | Path, test_set: str, tag: str) -> Path:
    return Path(out_dir) / f"hyps-{test_set}-{tag}.jsonl"


def meta_path(out_dir: str | Path, test_set: str, tag: str) -> Path:
    return Path(out_dir) / f"meta-{test_set}-{tag}.json"


def write_hyps(path: str | Path, rows: list[dict]) -> None:
    """rows: dicts with at least id, ref, hyp."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for r in rows:
            missing = {"id", "ref", "hyp"} - set(r)
            if missing:
                raise KeyError(f"hypothesis row {r.get('id', '?')} lacks {sorted(missing)}")
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def read_hyps(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no hypotheses at {path}: run decoding first (run.sh stage 5 / "
            "python -m unique_asr.bin.decode) with the same test set and tag"
        )
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not a JSON line ({e})") from e
    return rows


def write_meta(path: str | Path, meta: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def read_meta(path: str | Path) -> dict:
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}
