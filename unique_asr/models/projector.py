"""Projector: stack `model.stack` consecutive encoder frames into one audio token (2: 40 ms ->
80 ms) and map them to the decoder width with a 2-layer MLP.

The audio-token geometry (fbank frames per audio token) is defined here, from the encoder's
subsampling and the stack, for everything that needs it: training's shortest usable recording,
decoding's context arithmetic and long-form splitting.
"""

from __future__ import annotations

import torch
from torch import nn

from unique_asr.models.config import ModelConfig
from unique_asr.models.encoder import SUBSAMPLING, subsampled_lengths

FRAME_SHIFT_S = 0.01  # one fbank frame (10 ms hop)


def frames_per_token(cfg: ModelConfig) -> int:
    """Fbank frames per audio token of the decoder (encoder subsampling x projector stack)."""
    return SUBSAMPLING * cfg.stack


def audio_token_seconds(cfg: ModelConfig) -> float:
    """Seconds of audio per audio token (0.08 for 4x subsampling and stack 2)."""
    return frames_per_token(cfg) * FRAME_SHIFT_S


def audio_token_count(cfg: ModelConfig, num_frames: int) -> int:
    """Audio tokens the model makes from `num_frames` fbank frames (exact, incl. the convs'
    edge loss)."""
    return max(0, subsampled_lengths(int(num_frames))) // cfg.stack


class Projector(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.stack = cfg.stack
        self.net = nn.Sequential(
            nn.Linear(cfg.stack * cfg.encoder.dim, cfg.llm.dim), nn.GELU(),
            nn.Linear(cfg.llm.dim, cfg.llm.dim),
        )

    def forward(self, enc: torch.Tensor, enc_lens: torch.Tensor):
        B, T, D = enc.shape
        Ta = T // self.stack
        x = enc[:, : Ta * self.stack].reshape(B, Ta, self.stack * D)
        return self.net(x), enc_lens // self.stack
