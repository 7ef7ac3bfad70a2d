"""The decoder's one attention interface, with backends chosen by config (`attention=<name>`).

Two registries:
- TRAIN_ATTENTION[name](q, k, v, cfg) -> out, for training and dense-shaped passes. q [B,H,L,D],
  k/v [B,Hkv,L,D] (post-RoPE), causal; sequences are packed to the left so causal masking alone
  keeps padding out of every real query's view.
- CACHE_BACKENDS[name](...) -> a KV cache for decoding: `prefill(layer, q, k, v, lens)` stores the
  prompt and returns its attention output, `step(layer, q, k, v)` appends one token per sequence
  and attends, `advance(n)` moves the lengths once all layers are done.

Adding a backend is one registry line, e.g.
    TRAIN_ATTENTION["unique_soft"] = partial(_softmask, mode="soft")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class TrainAttentionConfig:
    """The decoder's training attention (`train.attention.*`): dense, or the UNIQUE page mask,
    soft (sparsity-aware training) or hard (top-k pages)."""

    kind: str = "dense"      # dense | unique_soft | unique_hard
    budget: int = 512        # tokens kept per query (budget // page_size pages)
    tau: float = 1.0         # temperature of the soft page mask
    page_size: int = 8       # tokens per page
    lam: float = 0.5         # weight of the std term of the page score

    def validate(self) -> None:
        kinds = ("dense", "unique_soft", "unique_hard")
        if self.kind not in kinds:
            raise ValueError(f"train.attention.kind={self.kind!r}: use one of {', '.join(kinds)}")
        for name in ("budget", "page_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"train.attention.{name}={getattr(self, name)}: must be >= 1")
        if float(self.tau) <= 0:
            raise ValueError(f"train.attention.tau={self.tau}: must be > 0")
        if float(self.lam) < 0:
            raise ValueError(f"train.attention.lam={self.lam}: must be >= 0")


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cfg: dict) -> torch.Tensor:
    """Causal GQA attention with torch SDPA (enable_gqa: K/V are never copied per query head)."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                          enable_gqa=q.shape[1] != k.shape[1])


def _softmask(q, k, v, cfg: dict, mode: str):
    """UNIQUE sparsity-aware training attention (METHOD.md soft page mask)."""
    from unique_asr.attention.softmask import softmask_attention

    return softmask_attention(
        q, k, v, page_size=int(cfg.get("page_size", 8)), budget=int(cfg.get("budget", 512)),
        tau=float(cfg.get("tau", 1.0)), mode=mode, lam=float(cfg.get("lam", 0.5)),
    )


TRAIN_ATTENTION: dict[str, Callable] = {
    "dense": dense_attention,
    "unique_soft": lambda q, k, v, cfg: _softmask(q, k, v, cfg, "soft"),
    "unique_hard": lambda q, k, v, cfg: _softmask(q, k, v, cfg, "hard"),
}


def train_attention(name: str) -> Callable:
    """Training/prefill attention for a backend name; decode-only backends prefill densely."""
    if name in TRAIN_ATTENTION:
        return TRAIN_ATTENTION[name]
    if name in CACHE_BACKENDS:
        return dense_attention
    raise ValueError(
        f"attention={name!r} unknown; training backends: {sorted(TRAIN_ATTENTION)}, "
        f"decoding backends: {sorted(CACHE_BACKENDS)}"
    )


class DenseKVCache:
    """Contiguous per-layer K/V storage [B, Hkv, max_len, D] with per-sequence lengths."""

    def __init__(self, n_layers, batch, max_len, n_kv_heads, head_dim, device, dtype, cfg=None):
        shape = (batch, n_kv_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.lens = torch.zeros(batch, dtype=torch.long, device=device)
        self.max_len = max_len

    def prefill(self, layer: int, q, k, v, lens: torch.Tensor) -> torch.Tensor:
        """Store the right-padded prompt K/V (length L) and return causal attention output."""
        L = k.shape[2]
        if L > self.max_len:
            raise ValueError(f"prompt of {L} tokens exceeds cache max_len={self.max_len}")
        self.k[layer][:, :, :L] = k.to(self.k[layer].dtype)
        self.v[layer][:, :, :L] = v.to(self.v[layer].dtype)
        return dense_attention(q, k, v, {})

    def step(self, layer: int, q, k, v) -> torch.Tensor:
        """Append one token per sequence (q/k/v [B,*,1,D]) at position lens[b] and attend."""
        if int(self.lens.max()) >= self.max_len:
            raise ValueError(f"KV cache full (max_len={self.max_len}); allocate a larger cache")
        b = torch.arange(k.shape[0], device=k.device)
        self.k[layer][b, :, self.lens] = k[:, :, 0].to(self.k[layer].dtype)
        self.v[layer][b, :, self.lens] = v[:, :, 0].to(self.v[layer].dtype)
        n = int(self.lens.max()) + 1
        kk, vv = self.k[layer][:, :, :n], self.v[layer][:, :, :n]
        mask = torch.arange(n, device=k.device)[None, :] <= self.lens[:, None]  # [B, n]
        return F.scaled_dot_product_attention(
            q, kk.to(q.dtype), vv.to(q.dtype), attn_mask=mask[:, None, None, :],
            enable_gqa=q.shape[1] != kk.shape[1],
        )

    def set_lens(self, lens: torch.Tensor) -> None:
        self.lens = lens.to(self.lens.device, torch.long).clone()

    def advance(self, n: int = 1) -> None:
        self.lens = self.lens + n

    def reorder(self, index: torch.Tensor) -> None:
        """Beam search: row i of the cache becomes old row index[i]."""
        self.k = [t.index_select(0, index) for t in self.k]
        self.v = [t.index_select(0, index) for t in self.v]
        self.lens = self.lens.index_select(0, index)


CACHE_BACKENDS: dict[str, Callable] = {"dense": DenseKVCache}

# UNIQUE paged sparse decoding (unique | quest | meanonly | oracle | paged_dense) on the library.
from unique_asr.models.paged_attention_cache import PAGED_CACHE_BACKENDS

CACHE_BACKENDS.update(PAGED_CACHE_BACKENDS)
