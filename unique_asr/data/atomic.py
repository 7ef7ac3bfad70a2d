"""Write-to-temp-then-rename helpers: a file under its final name is always complete, so an
interrupted stage never leaves something a re-run would mistake for finished work."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `path` (same suffix); rename it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp.{os.getpid()}.{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def write_jsonl(path: str | Path, rows) -> None:
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def write_audio(path: str | Path, audio: np.ndarray, rate: int) -> None:
    """Write 16-bit PCM audio; the format follows the suffix (.flac or .wav)."""
    path = Path(path)
    fmt = {".flac": "FLAC", ".wav": "WAV"}[path.suffix.lower()]
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16", format=fmt)


def write_manifest(path: str | Path, items) -> None:
    """Write lhotse manifest items (anything with .to_dict()) as gzipped JSON lines.

    Unlike lhotse's to_file, the gzip header carries no time stamp or file name, so the same
    items always give byte-identical files."""
    import gzip

    with atomic_path(path) as tmp, open(tmp, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        for item in items:
            gz.write((json.dumps(item.to_dict(), ensure_ascii=False) + "\n").encode("utf-8"))
