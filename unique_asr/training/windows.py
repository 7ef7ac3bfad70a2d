"""Training windows cut from long recordings at supervision boundaries (the length curriculum).

A window is a run of consecutive supervisions of one recording, from one sentence up to the whole
recording; its edges sit in the silences between sentences (a random share of each gap), so the
window's text is exactly the joined sentences it contains. Each epoch partitions every recording
into windows whose target lengths are drawn log-uniformly from [min_s, cap], where the cap grows
with the epoch (curriculum) until whole recordings are allowed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    """One usable sentence of a recording (seconds relative to the recording start)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Window:
    rec_id: str
    start: float
    end: float
    text: str
    # (start, end, characters) of each sentence, times relative to the window start, in the
    # order of `text` (sentences joined by one space): the per-sentence CTC targets
    # (model.ctc_segments, data.sentence_spans)
    spans: tuple[tuple[float, float, int], ...] = ()

    @property
    def duration(self) -> float:
        return self.end - self.start


def curriculum_cap(epoch: int, start_max_s: float, end_max_s: float, ramp_epochs: int) -> float:
    """Largest window length allowed in an epoch: log-linear from start_max_s to end_max_s."""
    if ramp_epochs <= 0 or epoch >= ramp_epochs:
        return end_max_s
    a = epoch / ramp_epochs
    return math.exp((1 - a) * math.log(start_max_s) + a * math.log(end_max_s))


def recording_windows(rec_id: str, segs: list[Segment], rec_dur: float, cap: float,
                      min_s: float, whole_prob: float, rng: random.Random,
                      breaks: frozenset[int] = frozenset()) -> list[Window]:
    """Partition one recording's sentences into windows (each sentence in exactly one window).

    breaks: indices i such that no window may span from segs[i-1] to segs[i] (e.g. an empty or
    bad supervision lies between them).
    """
    if not segs:
        return []
    if rec_dur <= cap and not breaks and rng.random() < whole_prob:
        return [_make(rec_id, segs, 0, len(segs), rec_dur, rng, whole=True)]
    out, i = [], 0
    while i < len(segs):
        target = math.exp(rng.uniform(math.log(min_s), math.log(max(cap, min_s))))
        j = i + 1
        while (j < len(segs) and j not in breaks
               and segs[j].end - segs[i].start <= target):
            j += 1
        out.append(_make(rec_id, segs, i, j, rec_dur, rng))
        i = j
    return out


def _make(rec_id, segs, i, j, rec_dur, rng, whole=False) -> Window:
    if whole:
        start, end = 0.0, rec_dur
    else:
        prev_end = segs[i - 1].end if i > 0 else 0.0
        next_start = segs[j].start if j < len(segs) else rec_dur
        start = segs[i].start - rng.uniform(0.0, 0.5) * max(0.0, segs[i].start - prev_end)
        end = segs[j - 1].end + rng.uniform(0.0, 0.5) * max(0.0, next_start - segs[j - 1].end)
    start, end = max(0.0, start), min(rec_dur, end)
    spans = tuple((round(s.start - start, 3), round(s.end - start, 3), len(s.text))
                  for s in segs[i:j])
    return Window(rec_id, start, end, " ".join(s.text for s in segs[i:j]), spans)


def epoch_windows(recordings: dict, epoch: int, seed: int, cap: float, min_s: float,
                  whole_prob: float) -> list[Window]:
    """Windows of all recordings for one epoch; deterministic in (seed, epoch).

    recordings: rec_id -> (segments, duration, breaks).
    """
    rng = random.Random(seed * 100_003 + epoch)
    out = []
    for rec_id in sorted(recordings):
        segs, dur, breaks = recordings[rec_id]
        out.extend(recording_windows(rec_id, segs, dur, cap, min_s, whole_prob, rng, breaks))
    return out
