"""Projector: stack 2 consecutive encoder frames (40 ms -> 80 ms per audio token) and map them to
the decoder width with a 2-layer MLP."""

from __future__ import annotations

import torch
from torch import nn

from unique_asr.models.config import ModelConfig


class Projector(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.stack = cfg.stack
        self.net = nn.Sequential(
            nn.Linear(cfg.stack * cfg.enc_dim, cfg.dec_dim), nn.GELU(),
            nn.Linear(cfg.dec_dim, cfg.dec_dim),
        )

    def forward(self, enc: torch.Tensor, enc_lens: torch.Tensor):
        B, T, D = enc.shape
        Ta = T // self.stack
        x = enc[:, : Ta * self.stack].reshape(B, Ta, self.stack * D)
        return self.net(x), enc_lens // self.stack
