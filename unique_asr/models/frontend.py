"""Feature frontend: global mean/variance normalisation and SpecAugment.

The statistics are buffers of the model (estimated once from training features before training),
so a checkpoint carries them and decoding normalises exactly as training did.
"""

from __future__ import annotations

import torch
from torch import nn

from unique_asr.models.config import ModelConfig


class GlobalCMVN(nn.Module):
    def __init__(self, n_mels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("istd", torch.ones(n_mels))

    @torch.no_grad()
    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.istd.copy_(1.0 / std.clamp_min(1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.istd


class SpecAugment(nn.Module):
    """Frequency and time masking (no time warping), applied only in training mode."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        c = self.cfg
        B, _T, Fd = x.shape
        x = x.clone()
        for b in range(B):
            for _ in range(c.specaug_freq_masks):
                w = int(torch.randint(0, c.specaug_freq_width + 1, ()))
                f0 = int(torch.randint(0, max(1, Fd - w), ()))
                x[b, :, f0:f0 + w] = 0.0
            n = int(lens[b])
            wmax = min(c.specaug_time_width_max, int(n * c.specaug_time_width_ratio))
            # one mask pair per ~10 s so long windows get masked as densely as short ones
            n_masks = c.specaug_time_masks * max(1, n // 1000)
            for _ in range(n_masks if wmax > 0 else 0):
                w = int(torch.randint(0, wmax + 1, ()))
                t0 = int(torch.randint(0, max(1, n - w), ()))
                x[b, t0:t0 + w] = 0.0
        return x
