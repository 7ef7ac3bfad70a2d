"""Projector: stack `model.stack` consecutive encoder frames into one audio token (conformer:
2 x 40 ms -> 80 ms; Whisper: 4 x 20 ms -> 80 ms) and map them to the decoder width with a
2-layer MLP.

The audio-token geometry (input feature frames per audio token) is defined here, from the
encoder's subsampling and the stack, for everything that needs it: training's shortest usable
recording, decoding's context arithmetic and long-form splitting.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from unique_asr.models.config import ModelConfig
from unique_asr.models.encoder import subsampled_lengths


def input_frame_seconds(cfg: ModelConfig) -> float:
    """Seconds per input feature frame (0.01; 0.02 for cached Whisper outputs)."""
    return cfg.encoder.input_frame_seconds


def frames_per_token(cfg: ModelConfig) -> int:
    """Input feature frames per audio token of the decoder (encoder subsampling x stack)."""
    return cfg.encoder.subsampling * cfg.stack


def audio_token_seconds(cfg: ModelConfig) -> float:
    """Seconds of audio per audio token (0.08 for 4x subsampling and stack 2)."""
    return frames_per_token(cfg) * input_frame_seconds(cfg)


def encoded_frames(cfg: ModelConfig, num_frames: int) -> int:
    """Encoder frames of `num_frames` input frames (exact, incl. the convs' edge loss)."""
    if cfg.encoder.kind == "conformer":
        return max(0, subsampled_lengths(int(num_frames)))
    return math.ceil(int(num_frames) / cfg.encoder.subsampling)


def audio_token_count(cfg: ModelConfig, num_frames: int) -> int:
    """Audio tokens the model makes from `num_frames` input frames."""
    return encoded_frames(cfg, num_frames) // cfg.stack


class Projector(nn.Module):
    def __init__(self, cfg: ModelConfig, enc_dim: int | None = None, llm_dim: int | None = None):
        super().__init__()
        self.stack = cfg.stack
        enc_dim = enc_dim or cfg.encoder.dim
        llm_dim = llm_dim or cfg.llm.dim
        self.net = nn.Sequential(
            nn.Linear(cfg.stack * enc_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim),
        )

    def forward(self, enc: torch.Tensor, enc_lens: torch.Tensor):
        B, T, D = enc.shape
        Ta = T // self.stack
        x = enc[:, : Ta * self.stack].reshape(B, Ta, self.stack * D)
        return self.net(x), enc_lens // self.stack
