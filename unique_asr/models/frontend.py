"""Feature frontend: global mean/variance normalisation, a sliding mean normalisation,
SpecAugment and a frequency warp.

The statistics are buffers of the model (estimated once from training features before training),
so a checkpoint carries them and decoding normalises exactly as training did.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


def sliding_cmn(x: torch.Tensor, lens: torch.Tensor, window: int) -> torch.Tensor:
    """Subtract from each frame the per-bin mean of the frames within window // 2 of it (only
    frames before `lens`; padded frames come out zero), as Kaldi's apply-cmvn-sliding --center.

    Why: the test voices are unseen engines and voices whose spectral tilt and level differ from
    every training voice; a global mean keeps those differences, a local one removes them, and a
    sliding window treats a one-sentence training window and a whole recording alike. Sums run
    in float64 so a 60-minute recording (360k frames) loses no precision. x: [B, T, F]."""
    if window <= 0:
        return x
    T = x.shape[1]
    valid = (torch.arange(T, device=x.device)[None, :] < lens[:, None])            # [B, T]
    xv = torch.where(valid[..., None], x, torch.zeros_like(x)).double()
    csum = F.pad(xv.cumsum(1), (0, 0, 1, 0))                                        # [B, T+1, F]
    ccount = F.pad(valid.double().cumsum(1), (1, 0))                                # [B, T+1]
    half = window // 2
    t = torch.arange(T, device=x.device)
    lo = (t - half).clamp(min=0)
    hi = (t + half + 1).clamp(max=T)
    count = (ccount[:, hi] - ccount[:, lo]).clamp_min(1.0)                          # [B, T]
    mean = (csum[:, hi] - csum[:, lo]) / count[..., None]
    return torch.where(valid[..., None], x - mean.to(x.dtype), torch.zeros_like(x))


def warp_frequency(x: torch.Tensor, max_warp: float, cut: float = 0.8,
                   factors: torch.Tensor | None = None) -> torch.Tensor:
    """Stretch each item's log-mel spectrum along frequency by a random factor a in
    [1 - max_warp, 1 + max_warp] (VTLP, Jaitly & Hinton 2013, on the mel axis).

    Why: the synthetic corpus has few training voices and its test voices are unseen; a shorter or
    longer vocal tract mostly scales formant frequencies, so warping the spectrum makes new
    pseudo-speakers from every training window. Output bin j reads input position j / a below
    `cut` of the axis; above it the map is linear so that the last bin stays the last bin (no
    bins run off the edge). x: [B, T, F] raw log-mel (warp before normalisation: the per-bin
    statistics belong to unwarped spectra). `factors` [B] fixes the factors (tests)."""
    B, _T, Fd = x.shape
    if factors is None:
        if max_warp <= 0 or Fd < 2:
            return x
        factors = 1.0 + (torch.rand(B, device=x.device) * 2 - 1) * max_warp
    a = factors.to(device=x.device, dtype=torch.float32)[:, None]             # [B, 1]
    j = torch.arange(Fd, device=x.device, dtype=torch.float32)[None, :]        # [1, F]
    top = float(Fd - 1)
    knee = cut * top * a.clamp(max=1.0)       # output knee: its source, knee / a, stays <= cut * top
    src_knee = knee / a
    low = j / a
    high = src_knee + (j - knee) * (top - src_knee) / (top - knee)
    src = torch.where(j <= knee, low, high).clamp(0, top)                      # [B, F]
    i0 = src.floor().long().clamp(max=Fd - 2)
    frac = (src - i0).to(x.dtype)[:, None, :]
    idx0 = i0[:, None, :].expand(-1, x.shape[1], -1)
    x0 = x.gather(2, idx0)
    x1 = x.gather(2, idx0 + 1)
    return x0 + (x1 - x0) * frac


class SpecAugment(nn.Module):
    """Frequency and time masking (no time warping), and the frequency warp (`warp`, on raw
    features before normalisation); all only in training mode."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg

    def warp(self, feats: torch.Tensor) -> torch.Tensor:
        """The frequency warp (model.specaug_freq_warp) on raw features, training mode only."""
        return warp_frequency(feats, self.cfg.specaug_freq_warp) if self.training else feats

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
