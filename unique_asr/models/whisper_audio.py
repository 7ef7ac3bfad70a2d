"""The Whisper encoder as the speech LLM's audio encoder: its features, its 30-s windows, which
of its blocks train, and the cached route.

Features: Whisper log-mel computed per 30-s window of the recording (Whisper's normalisation is
per window), [ceil(n / 160), 80] at 10 ms. The encoder pads each item's frames to whole 30-s
windows with that item's lowest value (the level Whisper's log-mel gives silence) and keeps
ceil(T / 2) output frames of 20 ms. Cached route: stage 2 stores exactly these outputs, so a
model with model.encoder.cached=true takes them as its input features unchanged and holds no
Whisper weights at all.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from unique_asr.models.config import WhisperEncoderConfig
from unique_asr.models.whisper import HOP, WINDOW_FRAMES, WINDOW_SAMPLES, WhisperEncoder, log_mel


def whisper_log_mel(audio: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """16-kHz audio [n] -> Whisper log-mel [ceil(n / 160), n_mels], window by window."""
    audio = audio.reshape(-1).float()
    n = audio.shape[0]
    n_win = max(1, math.ceil(n / WINDOW_SAMPLES))
    audio = F.pad(audio, (0, n_win * WINDOW_SAMPLES - n)).view(n_win, WINDOW_SAMPLES)
    mel = log_mel(audio, n_mels)                       # [n_win, n_mels, 3000]
    return mel.transpose(1, 2).reshape(-1, n_mels)[: math.ceil(n / HOP)]


class WhisperAudioEncoder(nn.Module):
    """feats [B, T, 80] log-mel (or, cached, [B, T, dim] encoder outputs) -> ([B, T', dim],
    lens). Frozen except the top `trainable_layers` blocks and the final norm."""

    def __init__(self, cfg: WhisperEncoderConfig, encoder: WhisperEncoder | None):
        super().__init__()
        self.cfg = cfg
        self.whisper = encoder
        if encoder is None:
            if not cfg.cached:
                raise ValueError("WhisperAudioEncoder needs the Whisper encoder unless cached")
            return
        if encoder.cfg.d_model != cfg.dim:
            raise ValueError(f"model.encoder.dim={cfg.dim} but {cfg.source} has width "
                             f"{encoder.cfg.d_model}; set model.encoder.dim={encoder.cfg.d_model}")
        encoder.requires_grad_(False)
        if cfg.trainable_layers:
            for block in encoder.blocks[-cfg.trainable_layers:]:
                block.requires_grad_(True)
            encoder.norm.requires_grad_(True)

    def forward(self, feats: torch.Tensor, lens: torch.Tensor):
        if self.cfg.cached:
            return feats, lens
        B, T, M = feats.shape
        n_win = max(1, math.ceil(T / WINDOW_FRAMES))
        valid = torch.arange(n_win * WINDOW_FRAMES, device=feats.device)[None] < lens[:, None]
        x = F.pad(feats, (0, 0, 0, n_win * WINDOW_FRAMES - T))
        floor = torch.where(valid[..., None], x, torch.full_like(x, float("inf"))).amin((1, 2))
        x = torch.where(valid[..., None], x, floor[:, None, None])
        x = x.view(B * n_win, WINDOW_FRAMES, M).transpose(1, 2)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.cfg.trainable_layers > 0):
            y = self.whisper(x)                                   # [B * n_win, 1500, dim]
        out_lens = (lens + 1) // 2
        return y.reshape(B, -1, y.shape[-1])[:, : (T + 1) // 2], out_lens

    def train(self, mode: bool = True):
        """A frozen encoder stays in eval mode."""
        super().train(mode)
        if self.whisper is not None and not self.cfg.trainable_layers:
            self.whisper.eval()
        return self
