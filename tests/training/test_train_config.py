"""TrainConfig: the hydra train group resolves to it, misspelt keys are refused by name."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from unique_asr.config import compose
from unique_asr.training.config import TrainConfig


def _compose(*overrides):
    return TrainConfig.from_dict(OmegaConf.to_container(compose(overrides).train, resolve=True))


def test_hydra_train_group_gives_the_dataclass_defaults_and_overrides():
    t = _compose()
    assert t.tag == "tiny" and t.lr == TrainConfig().lr and t.curriculum.end_max_s == 600.0
    g = _compose("train=gpu", "train.attention.kind=unique_soft", "train.attention.tau=0.5",
                 "train.curriculum.min_s=2")
    assert g.max_steps == 3000 and g.curriculum.end_max_s == 900.0 and g.curriculum.min_s == 2.0
    assert g.curriculum.restart_after_ctc_warmup and g.attention.kind == "unique_soft"
    assert g.attention.tau == 0.5 and g.attention.budget == 512


@pytest.mark.parametrize("d, key", [({"strategy": "ddp"}, "train.strategy"),
                                    ({"curriculum": {"min_sec": 1}}, "train.curriculum.min_sec"),
                                    ({"attention": {"topk": 4}}, "train.attention.topk")])
def test_unknown_keys_are_named_with_the_valid_ones(d, key):
    with pytest.raises(ValueError, match=rf"{key}.*valid keys") as e:
        TrainConfig.from_dict(d)
    assert "min_s" in str(e.value) or "max_steps" in str(e.value) or "budget" in str(e.value)


def test_bad_attention_kind_names_the_key():
    with pytest.raises(ValueError, match="train.attention.kind='sparse'"):
        TrainConfig.from_dict({"attention": {"kind": "sparse"}})
