"""LLaMA-style decoder: RMSNorm, RoPE, SwiGLU, GQA, tied (or untied) input/output embeddings.

Built from the speech LLM's ModelConfig (from scratch) or from an LLMConfig (llm_config.py), which
also covers pretrained LLaMA / Qwen2 (q/k/v bias) / Qwen3 (per-head q/k RMSNorm) checkpoints
(loaders in models/loaders/). RoPE rotates interleaved pairs (rope.py); loaders convert weights
stored for the half-split layout.

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
from unique_asr.models.llm_config import LLMConfig
from unique_asr.models.rope import apply_rope, rope_angles


def fused_inference(x: torch.Tensor) -> bool:
    """Whether the norms and RoPE take the one-launch kernels of triton_ops.py for x: on CUDA
    with no gradient recorded (decoding)."""
    return x.is_cuda and not torch.is_grad_enabled()


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fused_inference(x):
            from unique_asr.models import triton_ops

            return triton_ops.rms_norm(x, self.weight, self.eps)
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
    def __init__(self, cfg: LLMConfig, layer: int, train_attention: TrainAttentionConfig):
        super().__init__()
        self.layer = layer
        self.h, self.hkv = cfg.heads, cfg.kv_heads
        self.dh = cfg.head_dim
        self.q = nn.Linear(cfg.hidden, self.h * self.dh, bias=cfg.qkv_bias)
        self.kv = nn.Linear(cfg.hidden, 2 * self.hkv * self.dh, bias=cfg.qkv_bias)
        self.o = nn.Linear(self.h * self.dh, cfg.hidden, bias=cfg.out_bias)
        # Qwen3: RMSNorm over each head's q and k, before RoPE
        self.q_norm = RMSNorm(self.dh, cfg.eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(self.dh, cfg.eps) if cfg.qk_norm else None
        self.drop = nn.Dropout(cfg.dropout)
        self.train_attention = train_attention

    def _qkv(self, x, cos, sin):
        B, L, _ = x.shape
        q = self.q(x).view(B, L, self.h, self.dh).transpose(1, 2)
        k, v = self.kv(x).view(B, L, 2, self.hkv, self.dh).permute(2, 0, 3, 1, 4)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if fused_inference(q):
            from unique_asr.models import triton_ops

            return triton_ops.apply_rope(q, cos, sin), triton_ops.apply_rope(k, cos, sin), v
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
    def __init__(self, cfg: LLMConfig, layer: int, train_attention: TrainAttentionConfig):
        super().__init__()
        self.norm1 = RMSNorm(cfg.hidden, cfg.eps)
        self.attn = DecoderAttention(cfg, layer, train_attention)
        self.norm2 = RMSNorm(cfg.hidden, cfg.eps)
        self.mlp = SwiGLU(cfg.hidden, cfg.ffn, cfg.dropout)

    def forward(self, x, cos, sin, cache=None, mode="train", lens=None):
        x = x + self.attn(self.norm1(x), cos, sin, cache, mode, lens)
        return x + self.mlp(self.norm2(x))


class Decoder(nn.Module):
    """Decoder-only LM over embeddings; positions are given explicitly ([B, L] or [L]).

    `cfg` is the speech LLM's ModelConfig or an LLMConfig; `self.llm` is the LLMConfig either way.
    train_attention: how every layer attends in training (default dense); change it later
    with set_train_attention (fine-tuning, the hard-mask finish).
    """

    def __init__(self, cfg: ModelConfig | LLMConfig,
                 train_attention: TrainAttentionConfig | None = None):
        super().__init__()
        self.cfg = cfg
        llm = cfg if isinstance(cfg, LLMConfig) else LLMConfig.from_model_config(cfg)
        self.llm = llm
        self.embed = nn.Embedding(llm.vocab, llm.hidden)
        nn.init.normal_(self.embed.weight, std=llm.hidden ** -0.5)
        ta = train_attention or TrainAttentionConfig()
        ta.validate()
        self.train_attention = ta
        self.layers = nn.ModuleList(DecoderLayer(llm, i, ta) for i in range(llm.layers))
        self.norm = RMSNorm(llm.hidden, llm.eps)
        self.head_dim = llm.head_dim
        # untied output head (most pretrained LLMs above ~1B); tied ones reuse self.embed
        self.lm_head = None if llm.tie_embeddings else nn.Linear(llm.hidden, llm.vocab, bias=False)
        if getattr(getattr(cfg, "llm", None), "zero_init", False):
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
        cos, sin = rope_angles(positions, self.head_dim, self.llm.rope_theta)
        if cos.dim() == 3:  # per-sequence positions [B, L, D/2] -> broadcast over heads
            cos, sin = cos[:, None], sin[:, None]
        for layer in self.layers:
            x = layer(x, cos, sin, cache, mode, lens)
        return self.norm(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        weight = self.embed.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(h, weight)

    def step_logits(self, tokens: torch.Tensor, positions: torch.Tensor, cache) -> torch.Tensor:
        """One decode step's device work: token b at positions[b] through every layer (attending
        through `cache`, a decode cache or its step view) -> next-token logits [B, vocab] float32.
        The caller advances the cache's lengths."""
        h = self.hidden(self.embed(tokens)[:, None], positions[:, None], cache, "step")
        return self.logits(h[:, 0]).float()

    def decode_step(self, tokens: torch.Tensor, cache) -> torch.Tensor:
        """One token per sequence at position cache.lens[b] -> logits [B, vocab] float32; the
        cache advanced. (decoding/cuda_graph.GraphedStep runs the same step split for CUDA
        graphs.)"""
        logits = self.step_logits(tokens, cache.lens, cache)
        cache.advance(1)
        return logits
