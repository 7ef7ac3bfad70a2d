"""Shared bits of the hydra entry points: config location, logging of the resolved config."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_PATH = str(Path(__file__).resolve().parents[2] / "conf")

log = logging.getLogger("unique_asr")


def register_schemas() -> None:
    """Give hydra the typed decode config as the node `decode/schema`, which
    conf/decode/default.yaml extends: every decode key exists with its one default
    (unique_asr/decoding/config.py), so `decode.<key>=...` overrides need no `+`."""
    from hydra.core.config_store import ConfigStore

    from unique_asr.decoding.config import DecodeConfig

    ConfigStore.instance().store(group="decode", name="schema", node=DecodeConfig)


register_schemas()


def start(cfg: DictConfig, name: str) -> None:
    """Log what runs and where; the resolved config sits in hydra's run dir (.hydra/)."""
    from hydra.core.hydra_config import HydraConfig

    log.info("%s: recipe_dir=%s data_dir=%s", name, cfg.recipe_dir, cfg.data_dir)
    log.info("%s: resolved config and log in %s", name, HydraConfig.get().runtime.output_dir)


def to_dict(node) -> dict:
    return OmegaConf.to_container(node, resolve=True)
