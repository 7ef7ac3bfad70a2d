"""Reference transcripts per recording: from supervisions (a cut's, or a lhotse supervisions
manifest's) or from a `<id>\\t<text>` file (Kaldi's `text`: the first space also separates).

One recording's reference is its supervisions' texts in time order, joined by spaces: what
stage 5 scores a whole recording against, so user references score the same way.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


def speaker_turns(sups) -> list[tuple[str, str]]:
    """(speaker, text) of one recording's supervisions in time order, blanks dropped: what
    scoring needs to split a whole recording's errors by voice (speaker "?" where unset)."""
    sups = sorted(sups, key=lambda s: s.start)
    return [(s.speaker or "?", s.text.strip()) for s in sups if s.text and s.text.strip()]


def join_supervisions(sups) -> str:
    """The texts of one recording's supervisions in time order, blanks dropped."""
    return " ".join(text for _, text in speaker_turns(sups))


def _from_supervisions(path: Path) -> dict[str, str]:
    from lhotse import SupervisionSet

    try:
        sups = SupervisionSet.from_file(path)
        by_rec = defaultdict(list)
        for s in sups:
            by_rec[s.recording_id].append(s)
    except Exception as e:
        raise ValueError(f"{path}: not a lhotse supervisions manifest "
                         f"({type(e).__name__}: {e})") from e
    return {rec: join_supervisions(v) for rec, v in by_rec.items()}


def _from_text(path: Path) -> dict[str, str]:
    refs = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        rec = parts[0]
        if rec in refs:
            raise ValueError(f"{path}:{n}: recording {rec!r} has a second reference line")
        refs[rec] = parts[1].strip() if len(parts) > 1 else ""
    return refs


def read_references(path: str | Path) -> dict[str, str]:
    """{recording id: reference text} of a supervisions manifest (*.jsonl[.gz]) or a text file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"references {path} not found (transcribe.refs: a lhotse "
                                "supervisions manifest or a `<id>\\t<text>` file)")
    if path.name.lower().endswith((".jsonl", ".jsonl.gz", ".json")):
        return _from_supervisions(path)
    return _from_text(path)
