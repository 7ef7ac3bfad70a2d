"""Fine-tuning helpers: start from another run's weights, finish with hard-mask steps.

Sparsity-aware training (docs/method.md) fine-tunes a dense checkpoint with the decoder attention
switched to `unique_soft`, optionally ending with a few `unique_hard` steps:

    python -m unique_asr.bin.train model=small train=gpu train.attention.kind=unique_soft \
        train.attention.tau=0.5 train.attention.budget=512 train.init_from=exp/small/avg-3.pt \
        train.hard_steps=100 train.tag=small_soft

`train.init_from` loads the MODEL weights only (optimizer, schedule and data position start
fresh); a new exp dir (train.tag) keeps the dense run intact. A pretrained LLM trained frozen
(e.g. a CTC-only projector warm-up) may continue with `model.llm.finetune=lora`: the adapters
are new and start as the identity (their B matrices are zero), everything else must match.
`train.resume=true` in the new dir takes precedence once it has a last.pt, so a killed
fine-tune continues from its own state.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from unique_asr.models.checkpoint import check_config, load_state_strict
from unique_asr.models.config import ModelConfig

log = logging.getLogger(__name__)

# model.llm keys that a frozen-LLM checkpoint may differ in when the fine-tune adds LoRA
LORA_KEYS = ("finetune", "lora_rank", "lora_alpha", "lora_targets")


def _adds_lora(saved: dict, current: dict) -> bool:
    s, c = saved.get("llm") or {}, current.get("llm") or {}
    return s.get("finetune") == "frozen" and c.get("finetune") == "lora"


def load_init_weights(model: torch.nn.Module, path: str | Path, model_cfg: ModelConfig) -> int:
    """Copy the weights of checkpoint `path` (training or averaged) into `model`.

    The model config must match apart from runtime keys (attention backend, dropout, ...), so
    a dense checkpoint fine-tunes under `train.attention.kind=unique_soft`. Returns the
    checkpoint's step.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"train.init_from={path}: no such checkpoint; give a checkpoint file of a finished "
            "run, e.g. exp/<tag>/avg-3.pt or exp/<tag>/last.pt")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if "model" not in ck or "model_cfg" not in ck:
        raise ValueError(f"train.init_from={path}: not a unique_asr checkpoint (needs 'model' and "
                         "'model_cfg' entries)")
    saved, current = ck["model_cfg"], model_cfg.to_dict()
    new = set()
    if _adds_lora(saved, current):
        saved = {**saved, "llm": {**saved["llm"], **{k: current["llm"][k] for k in LORA_KEYS}}}
        new = {k for k in model.state_dict() if k.endswith(("lora_a", "lora_b"))}
        log.info("%s was trained with a frozen LLM: %d LoRA adapters start as the identity",
                 path, len(new) // 2)
    check_config(saved, current, path)
    load_state_strict(model, ck["model"], path, keep=new)
    step = int(ck.get("step", 0))
    log.info("initialised the model from %s (step %d, training attention %s)", path, step,
             model.train_attention.kind)
    return step


def set_train_attention(model: torch.nn.Module, kind: str) -> int:
    """Switch the decoder's training attention to `kind` (same budget, tau, page size, lam);
    returns the number of decoder layers."""
    model.set_train_attention(dataclasses.replace(model.train_attention, kind=kind))
    return len(model.decoder.layers)

