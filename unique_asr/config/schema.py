"""The run's config schema (what conf/config.yaml composes onto) and its hydra registration.

Groups: data, model (with model/encoder and model/llm classes), train, decode, transcribe; `corpus` belongs to
the recipe and stays free-form. Interpolated values (train.tag: ${model.name}, decode.model_dir:
${exp_dir}/${train.tag}, ...) are set in the YAML files, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from unique_asr.data.config import DataConfig
from unique_asr.decoding.config import DecodeConfig, TranscribeConfig
from unique_asr.models.config import ENCODERS, LLMS, ModelConfig
from unique_asr.training.config import TrainConfig


@dataclass
class ModelSchema(ModelConfig):
    """ModelConfig as hydra sees it: encoder and llm untyped until the preset's defaults list
    (or model.encoder=<kind>, model.llm=<kind>) merges one class of ENCODERS / LLMS in, so any
    registered class can take the place (a typed default would refuse the others)."""
    encoder: Any = None
    llm: Any = None


@dataclass
class RunConfig:
    recipe_dir: str = "egs/synth_longform"   # set by run.sh (absolute path)
    data_dir: str = "${recipe_dir}/data"     # manifests/, fbank/, lang_*/, corpus/
    exp_dir: str = "${recipe_dir}/exp"       # checkpoints, logs, decoding results
    seed: int = 20260528
    num_workers: int = 2                     # run.sh --nj
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSchema = field(default_factory=ModelSchema)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    transcribe: TranscribeConfig = field(default_factory=TranscribeConfig)
    corpus: Any = None                       # the recipe's own group (egs/<name>/conf/corpus/)


SCHEMA_NAME = "run_schema"


def register() -> None:
    """Register the schema and the model classes with hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name=SCHEMA_NAME, node=RunConfig)
    for name, cls in ENCODERS.items():
        cs.store(group="model/encoder", name=name, node=cls)
    for name, cls in LLMS.items():
        cs.store(group="model/llm", name=name, node=cls)


def schema_roots() -> list[type]:
    """Every class an unknown-key error can name."""
    return [RunConfig, *ENCODERS.values(), *LLMS.values()]


def compose(overrides: list[str] | None = None, config_dir: str | None = None):
    """The run config conf/config.yaml composes to with `overrides` (a DictConfig), as the entry
    points see it; hydra's own errors (unknown keys, missing presets) propagate."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from unique_asr.config.paths import CONFIG_PATH

    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir or CONFIG_PATH, version_base="1.3"):
            return hydra_compose(config_name="config", overrides=list(overrides or []))
    finally:
        GlobalHydra.instance().clear()
