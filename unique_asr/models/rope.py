"""Rotary position embedding shared by encoder and decoder attention.

A large base (500k, as in LLaMA-3) keeps the slowest rotations distinct over 64K positions, so a
whole long recording plus its transcript fits in the decoder context.
"""

from __future__ import annotations

import torch


def rope_angles(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, ...]:
    """cos, sin of shape [*positions.shape, head_dim/2] (float32)."""
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    ang = positions.float()[..., None] * inv
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[2i], x[2i+1]) of x [..., L, D] by angles broadcast from cos/sin [.., L, D/2]."""
    xf = x.float()
    x1, x2 = xf[..., 0::2], xf[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    return out.to(x.dtype)
