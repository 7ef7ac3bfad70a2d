"""The typed run config: presets compose onto the dataclass schema, and an unknown or misspelt
key in any group stops the run at start-up naming the key and the valid keys of its place."""

from __future__ import annotations

from pathlib import Path

import pytest

from unique_asr.bin._common import check_config
from unique_asr.config import CONFIG_PATH, compose, register
from unique_asr.models.config import ConformerConfig, ModelConfig, ScratchLLMConfig


@pytest.mark.parametrize("override, where, a_valid_key", [
    ("data.skipbad=true", "data", "skip_bad"),
    ("data.fbank.bins=40", "data.fbank", "num_mel_bins"),
    ("data.lang.vocab=100", "data.lang", "vocab_size"),
    ("model.ctc_weigth=0.1", "model", "ctc_weight"),
    ("model.enc_dim=64", "model", "encoder"),
    ("model.encoder.dimm=64", "model.encoder", "subsample_channels"),
    ("model.llm.kv_head=2", "model.llm", "kv_heads"),
    ("train.lrr=0.1", "train", "warmup_steps"),
    ("train.curriculum.end_max=5", "train.curriculum", "end_max_s"),
    ("train.attention.tua=0.5", "train.attention", "tau"),
    ("decode.beems=4", "decode", "beam"),
    ("decode.sparse.budgett=64", "decode.sparse", "sink_pages"),
])
def test_unknown_key_names_the_key_and_the_valid_ones(override, where, a_valid_key, capsys):
    register()
    with pytest.raises(SystemExit) as e:
        check_config([override])
    assert e.value.code == 2
    err = capsys.readouterr().err
    key = override.split("=")[0]
    assert f"unknown config key '{key}'" in err
    assert f"valid keys of {where}: " in err and a_valid_key in err.split("valid keys of")[1]


def test_known_keys_pass_the_check():
    register()
    check_config(["model=small", "model.encoder.layers=2", "train.attention.kind=unique_soft",
                  "decode.sparse.budget=64", "data.skip_bad=true"])


def test_presets_only_override_the_dataclass_defaults():
    """model=tiny is the dataclasses' defaults; small changes only what its YAML names."""
    tiny = ModelConfig.from_dict(_to_dict(compose([]).model))
    assert tiny == ModelConfig()
    small = ModelConfig.from_dict(_to_dict(compose(["model=small"]).model))
    assert small.encoder.layers == 12 and small.llm.dim == 512
    assert small.encoder.conv_kernel == ConformerConfig().conv_kernel
    assert small.llm.rope_base == ScratchLLMConfig().rope_base


@pytest.mark.parametrize("preset", sorted(p.stem for p in (Path(CONFIG_PATH) / "train").glob(
    "*.yaml")))
def test_every_train_preset_is_a_valid_train_config(preset):
    """Each conf/train/*.yaml composes onto the schema and passes TrainConfig's checks."""
    from unique_asr.training.config import TrainConfig

    cfg = TrainConfig.from_dict(_to_dict(compose([f"train={preset}"]).train))
    cfg.validate()
    if preset == "gpu_slm":  # the measured recipe of the pretrained speech LLM
        assert (cfg.max_duration, cfg.attention.kind, cfg.attention.budget) == (
            1200, "unique_soft", 512)


def test_model_config_from_dict_names_unknown_keys_and_classes():
    d = ModelConfig().to_dict()
    assert ModelConfig.from_dict(d) == ModelConfig()
    with pytest.raises(ValueError, match=r"model.encoder.dimm.*valid keys of model.encoder"):
        ModelConfig.from_dict({**d, "encoder": {**d["encoder"], "dimm": 3}})
    with pytest.raises(ValueError, match=r"model.llm='nope' is unknown; choose one of scratch"):
        ModelConfig.from_dict({**d, "llm": {"kind": "nope"}})
    with pytest.raises(ValueError, match="flat"):
        ModelConfig.from_dict({"enc_dim": 144, "dec_dim": 256})


@pytest.mark.parametrize("preset", ["data/default", "model/tiny", "train/default",
                                    "decode/default"])
def test_default_presets_restate_no_default(preset):
    """Each default is written once, in the dataclasses: the default presets hold only values
    that depend on other keys (interpolations such as train.tag: ${model.name})."""
    import yaml

    d = yaml.safe_load((Path(CONFIG_PATH) / f"{preset}.yaml").read_text()) or {}
    d.pop("defaults", None)
    restated = {k: v for k, v in d.items() if not (isinstance(v, str) and "${" in v)}
    assert not restated, f"conf/{preset}.yaml restates {restated}"


def _to_dict(node, resolve=True):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=resolve)
