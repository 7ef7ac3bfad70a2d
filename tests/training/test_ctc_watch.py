"""The CTC plateau warning (training/ctc_watch.py) on loss curves shaped like real runs."""

from __future__ import annotations

import math

from unique_asr.training.ctc_watch import CtcPlateauWatch


def _run(curve, warmup):
    w = CtcPlateauWatch()
    said = []
    for step, loss in enumerate(curve, start=1):
        w.add(step, loss)
        msg = w.check(step, due=step >= warmup)
        if msg:
            said.append((step, msg))
    return w, said


def test_a_flat_ctc_loss_warns_once_at_the_end_of_the_warm_up():
    # small on large, H200 session 8: 2.87 at steps 100-200, 2.63 from 300 on
    curve = [4.0 - 1.1 * min(s, 100) / 100 for s in range(200)] + [2.63] * 3000
    w, said = _run(curve, warmup=1500)
    assert [s for s, _ in said] == [1500] and w.on_plateau
    assert "plateau" in said[0][1] and "2.630" in said[0][1]


def test_a_falling_ctc_loss_does_not_warn():
    # tiny on the CPU: ~2.9 at steps 100-200, ~1.35 at step 800
    curve = [2.9 * math.exp(-max(0, s - 150) / 850) for s in range(2000)]
    w, said = _run(curve, warmup=800)
    assert not said and w.checked and not w.on_plateau


def test_no_warm_up_checks_at_step_300_and_a_resume_is_not_judged():
    w, said = _run([2.8] * 1000, warmup=0)
    assert [s for s, _ in said] == [300] and w.on_plateau
    resumed = CtcPlateauWatch()          # resumed at step 2000: no reference steps seen
    for step in range(2001, 2400):
        resumed.add(step, 2.8)
        assert resumed.check(step) is None
    assert resumed.checked and not resumed.on_plateau
