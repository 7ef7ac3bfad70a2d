"""Long-form decoding plan: whole recordings, split at pauses only when they exceed the context.

A recording is decoded WHOLE — all its audio tokens in the decoder's context, then its whole
transcript — whenever  audio_tokens + prompt + max_new_tokens <= model.cfg.llm.max_positions (the
prompt: the scratch decoder's one task token, or a pretrained LLM's text prompt).
Longer ones are cut into the fewest pieces that fit, each cut placed at a pause, and the pieces'
transcripts are joined with a space in time order (no overlap, so no words are merged or dropped
at a joint unless the pause was a word):
- split_at=energy (default, uses nothing from the reference): the cut goes at the latest of the
  quietest points (mean log-mel energy, smoothed over 0.3 s) in the last half of the allowed span;
- split_at=supervisions: the cut goes in the middle of the longest gap between the recording's
  supervisions in that span (segment times only, no text), falling back to energy if none.
Frames are the model's input feature frames (10 ms fbank or log-mel; 20 ms for cached Whisper
outputs: `frame_seconds`); how many make one audio token is the model's
(SpeechLLM.frames_per_token: encoder subsampling x projector stack, 8 by default).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch

from unique_asr.models.config import FEATURE_FRAME_SECONDS

SMOOTH_FRAMES = 30  # 0.3 s


def max_new_tokens(audio_tokens: int, tokens_per_second: float, min_new: int, *,
                   frames_per_token: int, frame_seconds: float = FEATURE_FRAME_SECONDS) -> int:
    """Transcript token limit for a piece with `audio_tokens` audio tokens."""
    seconds = audio_tokens * frames_per_token * frame_seconds
    return math.ceil(tokens_per_second * seconds) + int(min_new)


def max_piece_frames(max_positions: int, tokens_per_second: float, min_new: int,
                     max_seconds: float | None = None, *, frames_per_token: int,
                     frame_seconds: float = FEATURE_FRAME_SECONDS, prompt_tokens: int = 1) -> int:
    """Most feature frames one piece may have so that audio + prompt + transcript fit the
    context."""
    per_token = 1.0 + tokens_per_second * frames_per_token * frame_seconds  # per audio token
    # the last 1: max_new_tokens rounds the transcript's share up
    tokens = int((max_positions - prompt_tokens - min_new - 1) // per_token)
    frames = tokens * frames_per_token
    if max_seconds:
        frames = min(frames, int(max_seconds / frame_seconds))
    if frames < 10 * frames_per_token:
        raise ValueError(
            f"the context ({max_positions} positions) leaves only {frames} frames of audio per "
            "piece; lower decode.max_tokens_per_second or raise model.max_positions"
        )
    return frames


def min_frames(page_size: int, frames_per_token: int) -> int:
    """Fewest fbank frames a recording is padded to: more than one page of audio tokens."""
    return (page_size + 1) * frames_per_token


def pad_short(feats: torch.Tensor, min_frames: int, notes: Counter) -> torch.Tensor:
    """Pad a recording shorter than `min_frames` with copies of its quietest frame.

    One page of audio tokens is the least the decoder's paged cache and the encoder's
    subsampling are built for; a shorter recording is extended with near-silence rather than
    refused, and counted.
    """
    T = feats.shape[0]
    if T >= min_frames:
        return feats
    notes["padded_short"] += 1
    if T == 0:
        fill = torch.full((1, feats.shape[1]), float(np.log(1e-10)), dtype=feats.dtype)
    else:
        fill = feats[feats.mean(-1).argmin()][None]
    return torch.cat([feats, fill.expand(min_frames - T, -1)], 0)


def _smoothed_energy(feats: torch.Tensor) -> torch.Tensor:
    e = feats.float().mean(-1)
    k = min(SMOOTH_FRAMES, e.numel())
    c = torch.nn.functional.pad(e.cumsum(0), (1, 0))
    s = (c[k:] - c[:-k]) / k  # mean over [i, i+k)
    return torch.nn.functional.pad(s, (k // 2, e.numel() - s.numel() - k // 2), value=float("inf"))


def _latest_quiet(e: torch.Tensor) -> int:
    """Index of the latest frame about as quiet as the quietest (within 10% of the way from the
    minimum to the median), so pieces stay long and a cut still sits in a real pause."""
    lo, mid = float(e.min()), float(e.median())
    quiet = (e <= lo + 0.1 * (mid - lo)).nonzero()
    return int(quiet[-1]) if len(quiet) else int(e.argmin())


def split_points(
    feats: torch.Tensor,
    max_frames: int,
    split_at: str = "energy",
    gaps: list[tuple[float, float]] | None = None,
    frame_seconds: float = FEATURE_FRAME_SECONDS,
) -> list[tuple[int, int]]:
    """Frame ranges [start, end) covering the recording, each at most `max_frames` long.

    gaps: (start_s, end_s) silences between supervisions, for split_at=supervisions.
    """
    if split_at not in ("energy", "supervisions"):
        raise ValueError(f"decode.split_at={split_at!r}: use energy or supervisions")
    T = feats.shape[0]
    if T <= max_frames:
        return [(0, T)]
    energy = _smoothed_energy(feats)
    pieces, start = [], 0
    while T - start > max_frames:
        lo, hi = start + max_frames // 2, start + max_frames  # cut in the last half of the span
        cut = None
        if split_at == "supervisions" and gaps:
            inside = [(e - s, (s + e) / 2) for s, e in gaps
                      if lo <= (s + e) / 2 / frame_seconds < hi]
            if inside:
                cut = int(max(inside)[1] / frame_seconds)
        if cut is None:
            cut = lo + _latest_quiet(energy[lo:hi])
        pieces.append((start, cut))
        start = cut
    pieces.append((start, T))
    return pieces


def supervision_gaps(cut) -> list[tuple[float, float]]:
    """Silences between the cut's supervisions (seconds, relative to the cut)."""
    sups = sorted(cut.supervisions, key=lambda s: s.start)
    gaps, end = [], None
    for s in sups:
        if end is not None and s.start > end:
            gaps.append((end, s.start))
        end = s.end if end is None else max(end, s.end)
    return gaps
