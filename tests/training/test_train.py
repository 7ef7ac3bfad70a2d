"""The training loop on tiny synthetic data: loss goes down, kill + resume is exact, checkpoint
files, and NaN losses are skipped then stop training with a clear error."""

from __future__ import annotations

import json

import pytest
import torch
from synth import CharTokenizer, make_cuts, tiny_model_cfg, train_cfg

from unique_asr.decoding import greedy_decode
from unique_asr.models import CheckpointMismatchError, load_checkpoint
from unique_asr.models.speech_llm import SpeechLLM
from unique_asr.training.data import load_recordings
from unique_asr.training.trainer import NonFiniteLossError, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    cuts = make_cuts(tmp_path_factory.mktemp("synth"), n_recs=4, n_sents=6)
    return load_recordings(cuts, tiny_model_cfg())


def _losses(exp):
    return {r["step"]: r["loss"] for r in map(json.loads, (exp / "train_log.jsonl").read_text().splitlines())
            if "loss" in r}


def test_training_reduces_loss_and_writes_checkpoints(data, tmp_path):
    exp = tmp_path / "exp"
    summary = train(tiny_model_cfg(), train_cfg(max_steps=24, save_every=8, valid_every=8,
                                                valid_wer_recordings=1), exp, data, data,
                    CharTokenizer(), seed=3, greedy=greedy_decode)
    losses = _losses(exp)
    first, last = sum(losses[s] for s in (1, 2, 3)) / 3, sum(losses[s] for s in (22, 23, 24)) / 3
    assert last < 0.7 * first, (first, last)
    names = sorted(p.name for p in exp.glob("*.pt"))
    assert names == ["avg-2.pt", "checkpoint-16.pt", "checkpoint-24.pt", "last.pt"]  # keep 2
    model, cfg = load_checkpoint(exp / "avg-2.pt")
    assert cfg["encoder"]["dim"] == 32 and isinstance(model, SpeechLLM)
    ck = torch.load(exp / "last.pt", weights_only=False)
    assert {"model", "model_cfg", "optimizer", "scheduler", "step", "epoch", "batch_idx",
            "rng"} <= set(ck)
    assert summary["steps"] == 24 and "dev_greedy_wer_last" in summary
    assert any("valid_loss" in json.loads(x) for x in (exp / "train_log.jsonl").read_text().splitlines())
    assert (exp / "tensorboard").is_dir()


def test_kill_and_resume_gives_identical_losses(data, tmp_path):
    cfg = tiny_model_cfg(dropout=0.1)  # dropout + SpecAugment: RNG state must be restored too
    full = tmp_path / "full"
    train(cfg, train_cfg(max_steps=10, save_every=2), full, data, None, CharTokenizer(), seed=5)
    part = tmp_path / "part"
    s = train(cfg, train_cfg(max_steps=10, save_every=2, halt_after_steps=6), part, data, None,
              CharTokenizer(), seed=5)
    assert s["halted"] and s["steps"] == 6
    train(cfg, train_cfg(max_steps=10, save_every=2, resume=True), part, data, None,
          CharTokenizer(), seed=5)
    a, b = _losses(full), _losses(part)
    assert sorted(b) == list(range(1, 11))
    for step in range(1, 11):
        assert a[step] == pytest.approx(b[step], rel=1e-6, abs=1e-7), step
    # resuming with another model config is refused, naming the keys
    with pytest.raises(CheckpointMismatchError, match="encoder.layers: checkpoint=1 config=2"):
        train(tiny_model_cfg(encoder={"layers": 2}), train_cfg(max_steps=12, resume=True), part, data,
              None, CharTokenizer(), seed=5)


def test_nan_loss_batches_are_skipped_then_training_stops(data, tmp_path, monkeypatch):
    orig = SpeechLLM.forward
    calls = {"n": 0}
    bad_calls = {2, 5, 6, 7, 8}

    def flaky(self, *a, **k):
        calls["n"] += 1
        out = orig(self, *a, **k)
        if calls["n"] in bad_calls:
            out["loss_sum"] = out["loss_sum"] * float("nan")
        return out

    monkeypatch.setattr(SpeechLLM, "forward", flaky)
    exp = tmp_path / "exp"
    with pytest.raises(NonFiniteLossError, match="3 consecutive"):
        train(tiny_model_cfg(), train_cfg(max_steps=20, max_bad_steps=3), exp, data, None,
              CharTokenizer(), seed=1)
    rows = [json.loads(x) for x in (exp / "train_log.jsonl").read_text().splitlines()]
    ok = {r["step"]: r["ok"] for r in rows if "ok" in r}
    assert ok[1] and not ok[2] and ok[3] and not ok[5]
    ck = torch.load(exp / "last.pt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_wall_clock_budget_stops_training_with_the_schedule_at_its_end(data, tmp_path):
    exp = tmp_path / "exp"
    s = train(tiny_model_cfg(), train_cfg(max_steps=1000, max_minutes=0.002), exp, data, None,
              CharTokenizer(), seed=1)
    assert 1 <= s["steps"] < 1000
    ck = torch.load(exp / "last.pt", weights_only=False)
    assert ck["scheduler"]["pos"] >= 1000  # cosine reached its floor when time ran out


def test_ctc_segments_train_the_ctc_head_on_windows_of_any_length(data, tmp_path):
    """model.ctc_segments=true: CTC per sentence (the windows' synthesis times). With ctc_max_s
    below every window's length, the whole-window CTC would skip them all (ctc 0); the
    per-sentence CTC scores every one of them."""
    rows = {}
    for seg in (False, True):
        exp = tmp_path / f"seg{seg}"
        train(tiny_model_cfg(ctc_segments=seg, ctc_max_s=0.2, ctc_weight=1.0), train_cfg(max_steps=4),
              exp, data, None, CharTokenizer(), seed=3)
        rows[seg] = [json.loads(x) for x in (exp / "train_log.jsonl").read_text().splitlines()
                     if '"ctc"' in x]
    assert all(r["ctc"] == 0 for r in rows[False])
    assert all(r["ctc"] > 0.5 for r in rows[True]), rows[True]
