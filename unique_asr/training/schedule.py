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


def make_optimizer(model, lr: float, weight_decay: float, betas=(0.9, 0.98)):
    """AdamW; no weight decay on norms, biases and the CMVN buffers (1-D tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=tuple(betas), eps=1e-8,
    )
