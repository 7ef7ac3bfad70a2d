"""LLaMA-style decoder: RMSNorm, RoPE, SwiGLU, GQA, tied input/output embeddings.

Attention goes through attention.py: training attention from a TrainAttentionConfig (dense or
the UNIQUE soft/hard page mask), decoding through the KV cache it is given (dense or paged
sparse), so this module stays the same whatever is chosen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unique_asr.models.attention import TRAIN_ATTENTION, TrainAttentionConfig
from unique_asr.models.config import ModelConfig
from unique_asr.models.rope import apply_rope, rope_angles


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class DecoderAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int, train_attention: TrainAttentionConfig):
        super().__init__()
        self.layer = layer
        self.h, self.hkv = cfg.dec_heads, cfg.dec_kv_heads
        self.dh = cfg.dec_dim // cfg.dec_heads
        self.q = nn.Linear(cfg.dec_dim, self.h * self.dh, bias=False)
        self.kv = nn.Linear(cfg.dec_dim, 2 * self.hkv * self.dh, bias=False)
        self.o = nn.Linear(self.h * self.dh, cfg.dec_dim, bias=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.train_attention = train_attention

    def _qkv(self, x, cos, sin):
        B, L, _ = x.shape
        q = self.q(x).view(B, L, self.h, self.dh).transpose(1, 2)
        k, v = self.kv(x).view(B, L, 2, self.hkv, self.dh).permute(2, 0, 3, 1, 4)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def _out(self, y):
        B, H, L, D = y.shape
        return self.drop(self.o(y.transpose(1, 2).reshape(B, L, H * D)))

    def forward(self, x, cos, sin, cache=None, mode: str = "train", lens=None):
        q, k, v = self._qkv(x, cos, sin)
        if mode == "train":
            y = TRAIN_ATTENTION[self.train_attention.kind](q, k, v, self.train_attention)
        elif mode == "prefill":
            y = cache.prefill(self.layer, q, k, v, lens)
        else:
            y = cache.step(self.layer, q, k, v)
        return self._out(y)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int, train_attention: TrainAttentionConfig):
        super().__init__()
        self.norm1 = RMSNorm(cfg.dec_dim)
        self.attn = DecoderAttention(cfg, layer, train_attention)
        self.norm2 = RMSNorm(cfg.dec_dim)
        self.mlp = SwiGLU(cfg.dec_dim, cfg.dec_ff, cfg.dropout)

    def forward(self, x, cos, sin, cache=None, mode="train", lens=None):
        x = x + self.attn(self.norm1(x), cos, sin, cache, mode, lens)
        return x + self.mlp(self.norm2(x))


class Decoder(nn.Module):
    """Decoder-only LM over embeddings; positions are given explicitly ([B, L] or [L]).

    train_attention: how every layer attends in training (default dense); change it later
    with set_train_attention (fine-tuning, the hard-mask finish)."""

    def __init__(self, cfg: ModelConfig, train_attention: TrainAttentionConfig | None = None):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dec_dim)
        nn.init.normal_(self.embed.weight, std=cfg.dec_dim ** -0.5)
        ta = train_attention or TrainAttentionConfig()
        ta.validate()
        self.train_attention = ta
        self.layers = nn.ModuleList(DecoderLayer(cfg, i, ta) for i in range(cfg.dec_layers))
        self.norm = RMSNorm(cfg.dec_dim)
        self.head_dim = cfg.dec_dim // cfg.dec_heads
        if cfg.dec_zero_init:
            self.zero_init_branches()

    def set_train_attention(self, cfg: TrainAttentionConfig) -> None:
        """Every layer attends with `cfg` in training from now on."""
        cfg.validate()
        self.train_attention = cfg
        for layer in self.layers:
            layer.attn.train_attention = cfg

    def zero_init_branches(self) -> None:
        """Zero each layer's attention output and SwiGLU down-projection, so every layer starts
        as the identity. Why: at initialisation causal attention averages nearly uniformly over
        the audio prefix, and each layer adds that average (std ~0.3 per dimension) to audio
        embeddings of std ~0.17: the local audio content the text queries must find is diluted
        layer by layer (the encoder's CTC plateau had the same cause, encoder.zero_init_branches)."""
        for layer in self.layers:
            nn.init.zeros_(layer.attn.o.weight)
            nn.init.zeros_(layer.mlp.w2.weight)

    def hidden(self, x, positions, cache=None, mode="train", lens=None):
        cos, sin = rope_angles(positions, self.head_dim, self.cfg.rope_base)
        if cos.dim() == 3:  # per-sequence positions [B, L, D/2] -> broadcast over heads
            cos, sin = cos[:, None], sin[:, None]
        for layer in self.layers:
            x = layer(x, cos, sin, cache, mode, lens)
        return self.norm(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.embed.weight)  # tied embeddings
