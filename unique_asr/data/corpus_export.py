"""A local copy of a real corpus -> the corpus layout stage 1 reads (manifests.py):
<corpus_dir>/<split>/audio/<recording_id>.{flac,wav} and <corpus_dir>/<split>/segments.jsonl.

The recipes for real corpora (egs/librispeech_longform, egs/tedlium3, egs/earnings21) parse
their corpus with lhotse and hand the results to these helpers, so the shared stages 1-6 see the
same files as for the synthetic recipe. Audio that stage 1 can read as it is (FLAC or WAV at the
pipeline's rate) is linked, not copied; anything else (NIST SPHERE, MP3, another rate) and every
joined or cropped span is written as 16-bit FLAC at the pipeline's rate, sample-exact.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .atomic import write_audio, write_jsonl

log = logging.getLogger(__name__)

LINKABLE = (".flac", ".wav")  # what stage 1 reads (manifests.py)


@dataclass(frozen=True)
class Span:
    """Part of a source audio file, in seconds; duration None runs to the end of the file."""

    path: Path
    start: float = 0.0
    duration: float | None = None


def read_span(span: Span, rate: int) -> np.ndarray:
    """Mono float32 samples of `span` at `rate` (soundfile reads FLAC, WAV, NIST SPHERE, MP3;
    no sph2pipe needed)."""
    with sf.SoundFile(str(span.path)) as f:
        sr = f.samplerate
        first = int(round(span.start * sr))
        count = -1 if span.duration is None else int(round(span.duration * sr))
        f.seek(first)
        audio = f.read(count, dtype="float32", always_2d=True).mean(axis=1)
    if sr != rate:
        from lhotse.augmentation import Resample

        audio = Resample(sr, rate)(audio[None])[0].astype(np.float32)
    return audio


def write_joined(out: Path, spans: list[Span], rate: int,
                 gap_s: float = 0.0) -> list[tuple[float, float]]:
    """Write `spans` one after another (with `gap_s` of silence between) as one FLAC; return
    the (start, duration) of each span in it, in seconds, exact to the sample."""
    gap = np.zeros(int(round(gap_s * rate)), np.float32)
    parts, times, pos = [], [], 0
    for i, span in enumerate(spans):
        if i and len(gap):
            parts.append(gap)
            pos += len(gap)
        audio = read_span(span, rate)
        parts.append(audio)
        times.append((pos / rate, len(audio) / rate))
        pos += len(audio)
    write_audio(out, np.concatenate(parts) if parts else np.zeros(0, np.float32), rate)
    return times


def place_audio(src: Path, audio_dir: Path, recording_id: str, rate: int) -> float:
    """Put `src` into `audio_dir` as <recording_id>.<ext>: a symbolic link when stage 1 can
    read it as it is, else a FLAC copy at `rate`. Kept when already there (files are written
    under a temporary name, so an existing one is complete). Returns its duration in seconds."""
    src = Path(src).resolve()
    info = sf.info(str(src))
    if src.suffix.lower() in LINKABLE and info.samplerate == rate:
        dst = audio_dir / f"{recording_id}{src.suffix.lower()}"
        if not dst.is_symlink() or dst.resolve() != src:
            audio_dir.mkdir(parents=True, exist_ok=True)
            tmp = audio_dir / f".tmp.{os.getpid()}.{dst.name}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(src)
            os.replace(tmp, dst)
        return info.frames / info.samplerate
    dst = audio_dir / f"{recording_id}.flac"
    if not dst.is_file():
        write_audio(dst, read_span(Span(src), rate), rate)
    return sf.info(str(dst)).duration


def write_segments(corpus_dir: Path, split: str, rows: list[dict]) -> Path:
    """Write <corpus_dir>/<split>/segments.jsonl (one JSON line per sentence, in time order)."""
    path = Path(corpus_dir) / split / "segments.jsonl"
    write_jsonl(path, sorted(rows, key=lambda r: (r["recording_id"], float(r["start"]))))
    log.info("%s: %d segments, %d recordings -> %s", split, len(rows),
             len({r["recording_id"] for r in rows}), path)
    return path


def missing_corpus_file(corpus: str, path: Path, layout: str) -> FileNotFoundError:
    """The error every real-corpus recipe gives when its copy lacks a file: the missing path,
    the layout expected and the option that points at the copy."""
    return FileNotFoundError(
        f"{corpus}: {path} not found. Expected on-disk layout under corpus.path:\n{layout}\n"
        f"Point the recipe at your copy with `-- corpus.path=/path/to/it` (see its README.md).")
