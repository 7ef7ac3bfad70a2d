"""Whisper's audio encoder and log-mel frontend in plain PyTorch, for pretrained checkpoints
(loaders in models/loaders/whisper_*.py).

Frontend (as Whisper's): 16 kHz audio, 400-point periodic-Hann STFT with hop 160 (centred,
reflect padding), power spectrum, Slaney-style mel filters (80 or 128 bins), log10 clamped at
1e-10 and at (max - 8), then (x + 4) / 4; one window is 30 s = 480000 samples = 3000 frames.
Encoder: two 3-tap conv1d with GELU (the second stride 2: 3000 -> 1500 frames, 50 per second),
sinusoidal positions, pre-LayerNorm blocks (attention with q/v bias and no k bias, GELU MLP),
final LayerNorm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
WINDOW_SAMPLES = 30 * SAMPLE_RATE      # 480000
WINDOW_FRAMES = WINDOW_SAMPLES // HOP  # 3000 mel frames -> 1500 encoder frames
SAMPLES_PER_ENC_FRAME = 2 * HOP        # 320: 50 encoder frames per second


@dataclass
class WhisperDims:
    n_mels: int = 80
    n_ctx: int = 1500      # encoder positions (one 30-s window)
    d_model: int = 512
    n_heads: int = 8
    n_layers: int = 6


def mel_filters(n_mels: int) -> torch.Tensor:
    """[n_mels, N_FFT//2 + 1] Slaney-scale, Slaney-normalised triangular filters (librosa's
    defaults, which Whisper's shipped filters were made with)."""
    import torchaudio

    fb = torchaudio.functional.melscale_fbanks(N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, n_mels,
                                               SAMPLE_RATE, norm="slaney", mel_scale="slaney")
    return fb.T.contiguous()


def log_mel(audio: torch.Tensor, n_mels: int = 80, filters: torch.Tensor | None = None
            ) -> torch.Tensor:
    """Whisper log-mel features of one 30-s window: audio [..., n] (n <= 480000, zero-padded to
    480000) -> [..., n_mels, 3000]."""
    if audio.shape[-1] > WINDOW_SAMPLES:
        raise ValueError(f"log_mel takes at most {WINDOW_SAMPLES} samples (one 30-s window), "
                         f"got {audio.shape[-1]}; use WhisperEncoder.encode_long")
    audio = F.pad(audio.float(), (0, WINDOW_SAMPLES - audio.shape[-1]))
    window = torch.hann_window(N_FFT, device=audio.device)
    spec = torch.stft(audio, N_FFT, HOP, window=window, return_complex=True)
    power = spec[..., :-1].abs() ** 2  # 3001 centred frames; the last one is dropped
    fb = mel_filters(n_mels) if filters is None else filters
    mel = torch.clamp(fb.to(power) @ power, min=1e-10).log10()
    peak = mel.amax(dim=(-2, -1), keepdim=True)
    return (torch.maximum(mel, peak - 8.0) + 4.0) / 4.0


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """[length, channels] positions: sin of channels/2 geometric timescales, then cos."""
    inc = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2, dtype=torch.float32))
    t = torch.arange(length, dtype=torch.float32)[:, None] * inv[None]
    return torch.cat([t.sin(), t.cos()], dim=1)


class WhisperAttention(nn.Module):
    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = (p(x).view(B, T, self.n_heads, -1).transpose(1, 2)
                   for p in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.o(y.transpose(1, 2).reshape(B, T, D))


class WhisperBlock(nn.Module):
    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.attn_norm = nn.LayerNorm(d)
        self.attn = WhisperAttention(d, n_heads)
        self.mlp_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_norm(x))))


class WhisperEncoder(nn.Module):
    def __init__(self, cfg: WhisperDims):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.conv1 = nn.Conv1d(cfg.n_mels, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.register_buffer("positions", sinusoids(cfg.n_ctx, d))
        self.blocks = nn.ModuleList(WhisperBlock(d, cfg.n_heads) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d)
        self.register_buffer("filters", mel_filters(cfg.n_mels), persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B, n_mels, 2 * n_ctx] -> [B, n_ctx, d_model]."""
        x = F.gelu(self.conv1(mel.to(self.conv1.weight.dtype)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        if x.shape[1] != self.positions.shape[0]:
            raise ValueError(f"Whisper encoder takes {2 * self.positions.shape[0]} mel frames "
                             f"(one 30-s window), got {mel.shape[-1]}")
        x = x + self.positions.to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    @torch.no_grad()
    def encode_long(self, audio: torch.Tensor, batch_size: int = 4) -> torch.Tensor:
        """Encode 16-kHz audio [n] of any length as consecutive 30-s windows (the last one
        zero-padded) -> [ceil(n / 320), d_model], 50 frames per second; the frames that only
        cover the padding of the last window are dropped."""
        audio = audio.reshape(-1).float().to(self.positions.device)
        n = audio.shape[0]
        n_win = max(1, math.ceil(n / WINDOW_SAMPLES))
        audio = F.pad(audio, (0, n_win * WINDOW_SAMPLES - n)).view(n_win, WINDOW_SAMPLES)
        out = []
        for i in range(0, n_win, batch_size):
            mel = log_mel(audio[i:i + batch_size], self.cfg.n_mels, self.filters)
            out.append(self(mel).reshape(-1, self.cfg.d_model))
        return torch.cat(out)[:math.ceil(n / SAMPLES_PER_ENC_FRAME)]
