"""Training windows: exact text, sentence partition, breaks, curriculum growth, determinism."""

from __future__ import annotations

import random

from unique_asr.training.windows import (
    Segment,
    curriculum_cap,
    epoch_windows,
    recording_windows,
)


def _segs(n=40, seed=0):
    r = random.Random(seed)
    out, t = [], 0.4
    for i in range(n):
        d = r.uniform(1.0, 5.0)
        out.append(Segment(t, t + d, f"w{i}"))
        t += d + r.uniform(0.2, 1.0)
    return out, t + 0.4


def test_windows_partition_sentences_with_exact_text():
    segs, dur = _segs()
    for cap in (3.0, 20.0, 1000.0):
        ws = recording_windows("r", segs, dur, cap, 1.0, 0.0, random.Random(1))
        words = " ".join(w.text for w in ws).split()
        assert words == [s.text for s in segs]  # every sentence exactly once, in order
        for w in ws:
            inside = [s for s in segs if s.start >= w.start - 1e-9 and s.end <= w.end + 1e-9]
            assert " ".join(s.text for s in inside) == w.text  # no partial sentence inside
            assert 0.0 <= w.start < w.end <= dur
        multi = [w for w in ws if len(w.text.split()) > 1]
        assert all(w.duration <= cap + 2.0 for w in multi)


def test_whole_recording_and_breaks():
    segs, dur = _segs(10)
    ws = recording_windows("r", segs, dur, 1e9, 1.0, 1.0, random.Random(0))
    assert len(ws) == 1 and ws[0].start == 0.0 and ws[0].end == dur
    ws = recording_windows("r", segs, dur, 1e9, 1e9, 1.0, random.Random(0), frozenset({4}))
    assert [w.text.split()[0] for w in ws] == ["w0", "w4"]  # never spans the break


def test_curriculum_grows_to_whole_recordings_and_is_deterministic():
    caps = [curriculum_cap(e, 20.0, 600.0, 3) for e in range(5)]
    assert abs(caps[0] - 20.0) < 1e-9 and caps[3] == caps[4] == 600.0
    assert caps[0] < caps[1] < caps[2] < caps[3]
    recs = {f"r{i}": (*_segs(60, i), frozenset()) for i in range(3)}
    a = epoch_windows(recs, 2, 7, 200.0, 1.0, 0.3)
    b = epoch_windows(recs, 2, 7, 200.0, 1.0, 0.3)
    c = epoch_windows(recs, 3, 7, 200.0, 1.0, 0.3)
    assert a == b and a != c
    early = max(w.duration for w in epoch_windows(recs, 0, 7, caps[0], 1.0, 0.3))
    late = max(w.duration for w in epoch_windows(recs, 4, 7, caps[4], 1.0, 0.3))
    assert early < 30.0 and late > 100.0
