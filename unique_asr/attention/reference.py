"""Plain-PyTorch reference of UNIQUE page statistics and page scores (METHOD.md).

Slow and obviously right: every Triton kernel is tested against the functions here. Shapes use
B = batch, H = query heads, Hkv = KV heads, G = H // Hkv (GQA group), L = tokens, D = head dim,
P = pages, S = page size.
"""

from __future__ import annotations

import torch

LAMBDA = 0.5  # weight of the spread term in the UNIQUE score (paper default)


def page_stats(k: torch.Tensor, page_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and spread of each page of contiguous keys.

    k: [B, Hkv, L, D] (post-RoPE). A last partial page uses only its real tokens.
    Returns mean [B, Hkv, P, D] and std [B, Hkv, P], std = sqrt(mean ||k||^2 - ||mean||^2),
    i.e. the L2 norm of the per-dimension population std, clamped at 0 before the sqrt.
    """
    B, Hkv, L, D = k.shape
    P = -(-L // page_size)
    pad = P * page_size - L
    kf = k.float()
    if pad:
        kf = torch.nn.functional.pad(kf, (0, 0, 0, pad))
    kp = kf.view(B, Hkv, P, page_size, D)
    counts = torch.full((P,), float(page_size), device=k.device)
    counts[-1] = page_size - pad
    mean = kp.sum(3) / counts[:, None]
    sq = (kp * kp).sum((3, 4)) / counts
    std = (sq - (mean * mean).sum(-1)).clamp_min(0).sqrt()
    return mean, std


def unique_page_scores(
    q: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, lam: float = LAMBDA
) -> torch.Tensor:
    """score(p) = max over the GQA group of q.mean_p + lam * ||q|| * std_p.

    q: [B, H, D] (one decoding query per sequence), mean: [B, Hkv, P, D], std: [B, Hkv, P].
    Returns [B, Hkv, P] (float32).
    """
    B, H, D = q.shape
    Hkv = mean.shape[1]
    qg = q.float().view(B, Hkv, H // Hkv, D)
    dot = torch.einsum("bhgd,bhpd->bhgp", qg, mean.float())
    off = lam * qg.norm(dim=-1)[..., None] * std.float()[:, :, None, :]
    return (dot + off).amax(2)
