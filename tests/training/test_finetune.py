"""Fine-tuning a dense run with the UNIQUE soft mask: train.init_from and train.hard_steps."""

from __future__ import annotations

import json

import pytest
import torch
from synth import CharTokenizer, make_cuts, tiny_model_cfg, train_cfg

from unique_asr.models import CheckpointMismatchError
from unique_asr.training.data import load_recordings
from unique_asr.training.trainer import train

# page 4, budget 8 tokens: windows of 0.5-2 s (~6-25 audio tokens) see more than 2 pages, so
# the soft mask really gates (the reference backend runs it on CPU)
SOFT = {"kind": "unique_soft", "page_size": 4, "budget": 8, "tau": 0.5}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_recordings(make_cuts(tmp_path_factory.mktemp("synth_ft"), n_recs=3, n_sents=4),
                           tiny_model_cfg())


def _log(exp):
    return [json.loads(x) for x in (exp / "train_log.jsonl").read_text().splitlines()]


def test_init_from_dense_then_soft_and_hard_steps(data, tmp_path):
    dense = tmp_path / "dense"
    train(tiny_model_cfg(), train_cfg(max_steps=4), dense, data, None, CharTokenizer(), seed=1)
    ft = tmp_path / "soft"
    train(tiny_model_cfg(), train_cfg(max_steps=4, init_from=str(dense / "last.pt"),
                                      hard_steps=2, lr=1e-9, warmup_steps=0, attention=SOFT),
          ft, data, None, CharTokenizer(), seed=1)
    # same seed, same first batch: with a near-zero lr the soft run starts from the dense weights
    # (loss close to the dense model's on that batch, far from a fresh model's)
    fresh = tmp_path / "fresh"
    train(tiny_model_cfg(), train_cfg(max_steps=1, lr=1e-9, warmup_steps=0, attention=SOFT),
          fresh, data,
          None, CharTokenizer(), seed=1)
    ck = torch.load(dense / "last.pt", weights_only=False)
    ft_ck = torch.load(ft / "last.pt", weights_only=False)
    for k, v in ck["model"].items():  # lr 1e-9: the weights barely moved from the dense ones
        if v.is_floating_point():
            torch.testing.assert_close(ft_ck["model"][k], v, rtol=1e-4, atol=1e-5)
    rows = _log(ft)
    assert [r.get("hard", False) for r in rows if "loss" in r] == [False, False, True, True]
    assert abs(rows[0]["loss"] - _log(fresh)[0]["loss"]) > 1e-3  # not a fresh start


def test_init_from_refuses_another_model_and_missing_file(data, tmp_path):
    dense = tmp_path / "dense"
    train(tiny_model_cfg(), train_cfg(max_steps=1), dense, data, None, CharTokenizer(), seed=1)
    with pytest.raises(CheckpointMismatchError, match="llm.layers: checkpoint=1 config=2"):
        train(tiny_model_cfg(llm={"layers": 2}),
              train_cfg(max_steps=1, init_from=str(dense / "last.pt"), attention=SOFT),
              tmp_path / "x", data,
              None, CharTokenizer(), seed=1)
    with pytest.raises(FileNotFoundError, match="train.init_from"):
        train(tiny_model_cfg(), train_cfg(max_steps=1, init_from=str(dense / "nope.pt"),
                                          attention=SOFT),
              tmp_path / "y", data, None, CharTokenizer(), seed=1)
