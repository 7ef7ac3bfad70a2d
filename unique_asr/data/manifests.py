"""Stage 1: a corpus directory in the generic layout -> lhotse manifests per split.

Input (what a recipe's stage 0 must produce; egs/synth_longform/local/synth_corpus is one
producer):
    <corpus_dir>/<split>/audio/<recording_id>.{flac,wav}
    <corpus_dir>/<split>/segments.jsonl   {"recording_id", "start", "duration", "speaker",
                                           "text", ...extra keys kept in `custom`}
Output: <manifests_dir>/{recordings,supervisions}_<split>.jsonl.gz, validated with lhotse.
Texts pass through normalize_text (idempotent), so references follow one policy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .atomic import write_manifest
from .text_norm import normalize_text

log = logging.getLogger(__name__)

_BASE_KEYS = {"recording_id", "start", "duration", "speaker", "text"}


def _read_segments(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            missing = _BASE_KEYS - row.keys()
            if missing:
                raise ValueError(f"{path}:{n}: missing keys {sorted(missing)}")
            rows.append(row)
    return rows


def build_manifests(corpus_dir: str | Path, manifests_dir: str | Path,
                    splits: list[str]) -> dict[str, dict]:
    """Write validated recordings/supervisions manifests for each split; return counts."""
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
    from lhotse.qa import validate_recordings_and_supervisions

    corpus_dir, manifests_dir = Path(corpus_dir), Path(manifests_dir)
    if not corpus_dir.is_dir():
        raise FileNotFoundError(f"corpus directory {corpus_dir} does not exist: run stage 0 "
                                "(corpus preparation) first, or point data_dir at your corpus")
    stats = {}
    for split in splits:
        audio_dir = corpus_dir / split / "audio"
        seg_path = corpus_dir / split / "segments.jsonl"
        audio = sorted(p for p in audio_dir.glob("*")
                   if p.suffix.lower() in (".flac", ".wav") and not p.name.startswith(".")) \
            if audio_dir.is_dir() else []
        if not audio:
            raise FileNotFoundError(f"no audio (*.flac, *.wav) in {audio_dir}: the corpus for "
                                    f"split '{split}' is missing or empty; re-run stage 0")
        if not seg_path.is_file():
            raise FileNotFoundError(f"{seg_path} not found: stage 0 did not finish split "
                                    f"'{split}'; re-run it")
        rows = _read_segments(seg_path)
        used = sorted({r["recording_id"] for r in rows})
        by_id = {p.stem: p for p in audio}
        absent = [r for r in used if r not in by_id]
        if absent:
            raise FileNotFoundError(f"{seg_path}: recordings {absent[:5]} have no audio in "
                                    f"{audio_dir}")
        recordings = RecordingSet.from_recordings(
            Recording.from_file(by_id[r].resolve(), recording_id=r) for r in used)
        sups, count = [], {}
        for row in sorted(rows, key=lambda r: (r["recording_id"], float(r["start"]))):
            rid = row["recording_id"]
            count[rid] = count.get(rid, 0) + 1
            custom = {k: row[k] for k in sorted(row.keys() - _BASE_KEYS)} or None
            sups.append(SupervisionSegment(
                id=f"{rid}-{count[rid]:04d}", recording_id=rid, start=float(row["start"]),
                duration=float(row["duration"]), channel=0, text=normalize_text(row["text"]),
                speaker=str(row["speaker"]), language="English", custom=custom))
        supervisions = SupervisionSet.from_segments(sups)
        validate_recordings_and_supervisions(recordings, supervisions)
        for name, manifest in (("recordings", recordings), ("supervisions", supervisions)):
            write_manifest(manifests_dir / f"{name}_{split}.jsonl.gz", manifest)
        hours = sum(r.duration for r in recordings) / 3600
        stats[split] = {"recordings": len(recordings), "supervisions": len(supervisions),
                        "hours": round(hours, 4),
                        "speakers": sorted({s.speaker for s in supervisions})}
        log.info("%s: %d recordings (%.3f h), %d supervisions, %d speakers", split,
                 len(recordings), hours, len(supervisions), len(stats[split]["speakers"]))
    return stats
