"""train.ctc_warmup_steps: the decoder's cross-entropy is off for the first steps (the encoder
learns from CTC alone), then both losses train; and the sampler copes with fewer windows than
buckets."""

from __future__ import annotations

import json

import pytest
import torch
from synth import CharTokenizer, make_cuts, tiny_model_cfg, train_cfg

from unique_asr.training.data import load_recordings, make_sampler, windows_to_cuts
from unique_asr.training.trainer import train
from unique_asr.training.windows import epoch_windows


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_recordings(make_cuts(tmp_path_factory.mktemp("synth_ctcw"), n_recs=3, n_sents=4),
                           tiny_model_cfg())


def _decoder_weights(path):
    sd = torch.load(path, weights_only=False)["model"]
    return {k: v for k, v in sd.items() if k.startswith("decoder.")}


def test_ctc_warmup_leaves_the_decoder_alone_then_trains_it(data, tmp_path):
    init = tmp_path / "init"
    train(tiny_model_cfg(), train_cfg(max_steps=1, lr=1e-12, warmup_steps=0), init, data, None,
          CharTokenizer(), seed=5)  # a checkpoint of (practically) the initial weights
    warm = tmp_path / "warm"
    train(tiny_model_cfg(), train_cfg(max_steps=6, ctc_warmup_steps=3, warmup_steps=0,
                                      save_every=3, keep_last=5, average_last=0), warm, data,
          None, CharTokenizer(), seed=5)
    log = [json.loads(x) for x in (warm / "train_log.jsonl").read_text().splitlines()]
    flags = {r["step"]: r.get("ctc_warmup", False) for r in log if "loss" in r}
    assert flags == {1: True, 2: True, 3: True, 4: False, 5: False, 6: False}
    # during the warm-up the loss is CTC alone (per token), afterwards CE joins it
    r = {x["step"]: x for x in log if "loss" in x}
    cfg = tiny_model_cfg()
    assert r[2]["loss"] == pytest.approx(cfg.ctc_weight * r[2]["ctc"], rel=1e-5)
    assert r[5]["loss"] == pytest.approx(cfg.ce_weight * r[5]["ce"] + cfg.ctc_weight * r[5]["ctc"],
                                         rel=1e-5)
    d0, d3, d6 = (_decoder_weights(p) for p in (init / "last.pt", warm / "checkpoint-3.pt",
                                                warm / "checkpoint-6.pt"))
    # zero CE gradient + no weight decay (train_cfg): Adam leaves the decoder exactly as it was
    moved3 = max(float((d3[k] - d0[k]).abs().max()) for k in d0)
    moved6 = max(float((d6[k] - d3[k]).abs().max()) for k in d0)
    assert moved3 < 1e-3 < moved6, (moved3, moved6)


def test_sampler_with_fewer_windows_than_buckets(data):
    wins = epoch_windows(data[1], 0, 1, 1e9, 1.0, 1.0)[:2]  # whole recordings: 2 windows
    batches = list(make_sampler(windows_to_cuts(wins), 1000.0, num_buckets=6, seed=1, epoch=0))
    assert sum(len(b) for b in batches) == 2


def test_curriculum_restarts_when_the_decoder_starts(data, tmp_path):
    """train.curriculum.restart_after_ctc_warmup: the window cap grows through the CTC warm-up,
    then the first step with the decoder's CE opens a new epoch whose cap is start_max_s again;
    the epoch it restarted at is checkpointed (resume continues the same ramp)."""
    cfg = train_cfg(max_steps=10, ctc_warmup_steps=7, warmup_steps=0, average_last=0,
                    save_every=10)
    cfg.curriculum.restart_after_ctc_warmup = True
    train(tiny_model_cfg(), cfg, tmp_path, data, None, CharTokenizer(), seed=5)
    r = [x for x in map(json.loads, (tmp_path / "train_log.jsonl").read_text().splitlines())
         if "loss" in x]
    warm = [x for x in r if x.get("ctc_warmup")]
    ce = [x for x in r if not x.get("ctc_warmup")]
    assert len(warm) == 7 and len(ce) == 3
    assert max(x["cap_s"] for x in warm) > 2.0  # the ramp advanced during the warm-up
    assert ce[0]["cap_s"] == 2.0 and ce[0]["epoch"] > warm[-1]["epoch"]
    ck = torch.load(tmp_path / "checkpoint-10.pt", weights_only=False)
    assert ck["ce_epoch0"] == ce[0]["epoch"]
