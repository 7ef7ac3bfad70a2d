"""Low-rank adapters (LoRA) for the pretrained decoder's linear layers.

A LoRALinear keeps the pretrained nn.Linear frozen and adds (alpha / rank) * B A x, with A
random and B zero, so training starts from the pretrained function exactly and only the
r * (in + out) adapter weights per layer learn.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.lora_a.to(x.dtype), self.lora_b.to(x.dtype)
        return self.base(x) + (x @ a.t() @ b.t()) * self.scale


def add_lora(module: nn.Module, targets, rank: int, alpha: float) -> int:
    """Wrap every nn.Linear of `module` whose attribute name is in `targets` (e.g. q, kv, o,
    w1, w2, w3 of the Decoder) in a LoRALinear; returns how many were wrapped."""
    names = set(targets)
    todo = [(parent, name, child) for parent in module.modules()
            for name, child in parent.named_children()
            if name in names and isinstance(child, nn.Linear)]
    for parent, name, child in todo:
        setattr(parent, name, LoRALinear(child, rank, alpha))
    return len(todo)


@torch.no_grad()
def merge_lora(module: nn.Module) -> int:
    """Fold every LoRALinear of `module` into a plain nn.Linear holding W + scale * B A (summed
    in float32, stored in W's dtype); returns how many were folded. For decoding: one matmul per
    projection instead of three and the adds (a decode step is launch-bound on a GPU); the
    module no longer trains its adapters nor loads a LoRA checkpoint afterwards."""
    todo = [(parent, name, child) for parent in module.modules()
            for name, child in parent.named_children() if isinstance(child, LoRALinear)]
    for parent, name, child in todo:
        base = child.base
        delta = (child.lora_b.float() @ child.lora_a.float()) * child.scale
        base.weight.copy_((base.weight.float() + delta.to(base.weight.device)).to(
            base.weight.dtype))
        setattr(parent, name, base)
    return len(todo)
