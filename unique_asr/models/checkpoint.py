"""Build a model from a config and load one from a checkpoint, with clear mismatch errors."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from unique_asr.models.config import ModelConfig, known_keys_only

log = logging.getLogger(__name__)


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model/config it is loaded into."""


def build_model(cfg: ModelConfig | dict):
    from unique_asr.models.speech_llm import SpeechLLM

    if not isinstance(cfg, ModelConfig):
        cfg = ModelConfig.from_dict(dict(cfg))
    return SpeechLLM(cfg)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"encoder": {"dim": 4}} -> {"encoder.dim": 4}: nested model configs compared key by key."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Every key (dotted for nested ones) whose value differs between the two configs."""
    saved, current = _flat(saved), _flat(current)
    keys = sorted(set(saved) | set(current))
    return [f"{k}: checkpoint={saved.get(k, '<missing>')!r} config={current.get(k, '<missing>')!r}"
            for k in keys if saved.get(k, "<missing>") != current.get(k, "<missing>")]


# keys that may differ between training and decoding (or a fine-tune, train.init_from) without
# invalidating the weights: the preset's name, runtime choices, and training-only losses, noise
# and initialisation
RUNTIME_KEYS = {"name", "dropout", "ctc_impl", "encoder.zero_init", "llm.zero_init",
                "text_input_noise", "inter_ctc_layers", "inter_ctc_weight", "ctc_weight",
                "ce_weight", "ctc_max_s"} | {
    k for k in ModelConfig.__dataclass_fields__ if k.startswith("specaug_")
}


def check_config(saved: dict, current: dict, path: str | Path) -> None:
    diffs = [d for d in config_mismatch(saved, current) if d.split(":")[0] not in RUNTIME_KEYS]
    if diffs:
        raise CheckpointMismatchError(
            f"checkpoint {path} was trained with another model config; mismatched keys:\n  "
            + "\n  ".join(diffs)
            + "\nUse the model=<name> the checkpoint was trained with, or another exp dir."
        )


def frozen_keys(model: torch.nn.Module) -> set[str]:
    """Names of the model's frozen parameters: with pretrained parts these are the weights the
    model loads from its source (model.encoder.source / model.llm.source) when it is built, so
    checkpoints need not carry them (a from-scratch model has none)."""
    return {n for n, p in model.named_parameters() if not p.requires_grad}


def model_state(model: torch.nn.Module) -> dict:
    """The state a checkpoint stores: everything but the frozen pretrained weights (a frozen
    SmolLM2 alone is over 500 MB in float32)."""
    skip = frozen_keys(model)
    return {k: v for k, v in model.state_dict().items() if k not in skip}


def load_state_strict(model: torch.nn.Module, state: dict, path: str | Path,
                      keep: set[str] = frozenset()) -> None:
    """Load `state` into `model`; every key must match, except frozen pretrained weights that the
    checkpoint left out (the model already holds them from its source) and the `keep` keys,
    which stay as the model was built (e.g. LoRA adapters new to a fine-tune)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state) - frozen_keys(model) - set(keep))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f"checkpoint {path} does not fit this model:\n  missing: {missing[:20]}\n  "
            f"unexpected: {unexpected[:20]}\n  shape mismatches: {shapes[:20]}"
        )
    model.load_state_dict(state, strict=False)


def load_checkpoint(path: str | Path, map_location="cpu", model_cfg: dict | None = None,
                    overrides: dict | None = None):
    """Load (model, cfg dict) from a checkpoint written by training (or averaging).

    model_cfg: if given, it must match the stored config (CheckpointMismatchError otherwise).
    overrides: runtime keys to change for decoding, e.g. {"dropout": 0.0}.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found (train first: run.sh --stage 4)")
    ck = torch.load(path, map_location=map_location, weights_only=False)
    if "model" not in ck or "model_cfg" not in ck:
        raise CheckpointMismatchError(f"{path} is not a unique_asr checkpoint (no model/model_cfg)")
    saved, dropped = known_keys_only(ck["model_cfg"])
    if dropped:
        stored = _flat(ck["model_cfg"])
        log.warning("checkpoint %s: config keys this unique_asr no longer has, ignored: %s",
                    path, ", ".join(f"model.{k}={stored[k]!r}" for k in dropped))
    if model_cfg is not None:
        check_config(saved, ModelConfig.from_dict(dict(model_cfg)).to_dict(), path)
    cfg = dict(saved)
    bad = sorted(set(overrides or {}) - RUNTIME_KEYS)
    if bad:
        raise ValueError(f"overrides {bad} would change the weights' meaning; allowed: "
                         f"{sorted(RUNTIME_KEYS)}")
    cfg.update(overrides or {})
    model = build_model(cfg)
    load_state_strict(model, ck["model"], path)
    model.eval()
    return model, cfg
