"""Learning-rate schedule: linear warm-up then cosine decay to a floor, per optimizer step."""

from __future__ import annotations

import math

import torch


def warmup_cosine(optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.05):
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        p = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, f)


def make_optimizer(model, lr: float, weight_decay: float, betas=(0.9, 0.98)):
    """AdamW; no weight decay on norms, biases and the CMVN buffers (1-D tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=tuple(betas), eps=1e-8,
    )
