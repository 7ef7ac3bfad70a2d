"""Shared bits of the hydra entry points: config location, logging of the resolved config."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_PATH = str(Path(__file__).resolve().parents[2] / "conf")

log = logging.getLogger("unique_asr")


def register_schemas() -> None:
    """Typed hydra groups: conf/train/*.yaml extend `schema`, the TrainConfig dataclass, so every
    train.* key has its type and default from training/config.py and can be overridden."""
    from hydra.core.config_store import ConfigStore

    from unique_asr.training.config import TrainConfig

    ConfigStore.instance().store(group="train", name="schema", node=TrainConfig)


register_schemas()


def start(cfg: DictConfig, name: str) -> None:
    """Log what runs and where; the resolved config sits in hydra's run dir (.hydra/)."""
    from hydra.core.hydra_config import HydraConfig

    log.info("%s: recipe_dir=%s data_dir=%s", name, cfg.recipe_dir, cfg.data_dir)
    log.info("%s: resolved config and log in %s", name, HydraConfig.get().runtime.output_dir)


def to_dict(node) -> dict:
    return OmegaConf.to_container(node, resolve=True)
