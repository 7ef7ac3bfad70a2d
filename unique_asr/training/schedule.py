"""Learning-rate schedule: linear warm-up then cosine decay to a floor, per optimizer step."""

from __future__ import annotations

import math

import torch


class WarmupCosine:
    """lr = base * factor(pos); pos is the step count, or a larger fractional position when
    training runs against a wall-clock budget (train.max_minutes), so the cosine still ends at
    its floor when time, not steps, runs out."""

    def __init__(self, optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.05):
        self.opt = optimizer
        self.warmup, self.total, self.min_ratio = warmup_steps, total_steps, min_ratio
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.pos = 0.0
        self._apply()

    def factor(self, pos: float) -> float:
        if pos < self.warmup:
            return (pos + 1) / max(1, self.warmup)
        p = min(1.0, (pos - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * p))

    def step(self, pos: float | None = None) -> None:
        self.pos = self.pos + 1 if pos is None else float(pos)
        self._apply()

    def _apply(self) -> None:
        for g, b in zip(self.opt.param_groups, self.base):
            g["lr"] = b * self.factor(self.pos)

    def state_dict(self) -> dict:
        return {"pos": self.pos, "base": list(self.base)}

    def load_state_dict(self, d: dict) -> None:
        if "pos" not in d:  # a torch LambdaLR state (checkpoints written with LambdaLR)
            d = {"pos": d["last_epoch"], "base": d["base_lrs"]}
        self.pos, self.base = float(d["pos"]), list(d["base"])
        self._apply()


def warmup_cosine(optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.05):
    return WarmupCosine(optimizer, warmup_steps, total_steps, min_ratio)


def make_optimizer(model, lr: float, weight_decay: float, betas=(0.9, 0.98),
                   pretrained_lr_scale: float = 1.0):
    """AdamW; no weight decay on norms, biases and the CMVN buffers (1-D tensors). Trainable
    parameters that start from pretrained weights (the model's `pretrained_parameter_names`,
    e.g. Whisper's top blocks) take lr * pretrained_lr_scale: at the new layers' rate they would
    lose what pretraining put in them within a few hundred steps."""
    if not pretrained_lr_scale > 0:
        raise ValueError(f"train.pretrained_lr_scale={pretrained_lr_scale} must be > 0")
    names = getattr(model, "pretrained_parameter_names", set)()
    groups = {}
    for n, p in model.named_parameters():
        if p.requires_grad:
            key = (p.dim() >= 2, n in names)
            groups.setdefault(key, []).append(p)
    return torch.optim.AdamW(
        [{"params": groups[k], "weight_decay": weight_decay if k[0] else 0.0,
          "lr": lr * (pretrained_lr_scale if k[1] else 1.0)}
         for k in sorted(groups, key=lambda k: (k[1], not k[0]))],
        lr=lr, betas=tuple(betas), eps=1e-8,
    )
