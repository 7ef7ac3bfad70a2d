"""UNIQUE soft-mask attention for sparsity-aware training: the public entry point.

A decoder layer calls ``softmask_attention`` where it would call causal SDPA::

    out = softmask_attention(q, k, v, page_size=8, budget=512, tau=0.5, mode="soft")

Interface
---------
- q: [B, H, L, D], k and v: [B, Hkv, L, D], H % Hkv == 0 (GQA; query head h reads KV head
  h // (H // Hkv), as ``repeat_interleave`` / SDPA ``enable_gqa``). Keys are post-RoPE. dtype
  bfloat16, float16 or float32 (float64 only through the reference). Returns [B, H, L, D] in q's
  dtype; causal; scaling 1/sqrt(D).
- page_size S (power of two), budget in tokens (k = budget // S pages, k >= 2), tau > 0 (gate
  temperature), mode "soft" (sigmoid gate, log g added to the logits) or "hard" (0/-inf top-k
  mask), lam (weight of the std term, docs/method.md default 0.5).
- seqlens: optional int tensor [B]; positions >= seqlens[b] are right padding: they are never
  attended to, their outputs are 0 and they pass no gradient. Padding must hold finite values.
- backend: "auto" (Triton on CUDA, reference on CPU unless TRITON_INTERPRET=1 asks for the
  kernels), "triton" or "reference".

Semantics (choices documented in ``reference_softmask``): for query t in page c = t // S, the
past pages 0..c-1 are scored with full-page stats, score = GQA-max of q.mean + lam *
stopgrad(||q||) * std; the own page always has gate 1 and takes one of the k slots (as at decode,
docs/method.md); theta = stopgrad midpoint of the (k-1)-th and k-th largest past-page scores; gate =
sigmoid((score - theta) / tau); a query seeing <= k pages is unmasked. Hard mode keeps exactly the
top k-1 past pages (score > theta) plus the own page. Gradients flow into q, k (through q.k and
through the page mean/std) and v; the GQA max sends the score gradient to the argmax head only.
Memory: the Triton path never builds an L x L tensor; it keeps O(L) per-row state plus page stats
and a bounded (~128 MiB) per-(query chunk, page) score scratch in the forward.
"""

from __future__ import annotations

import os

import torch

from unique_asr.attention.reference import LAMBDA
from unique_asr.attention.reference_softmask import softmask_attention_reference

__all__ = ["SoftmaskAttention", "softmask_attention"]

_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def _check(q, k, v, page_size, budget, tau, mode, seqlens):
    where = "unique_asr/attention/softmask.py: softmask_attention"
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"{where}: q, k, v must be 4-D [B, H, L, D]; got {q.shape}, {k.shape}, "
                         f"{v.shape}")
    B, H, L, D = q.shape
    if k.shape != v.shape or k.shape[0] != B or k.shape[2] != L or k.shape[3] != D:
        raise ValueError(f"{where}: k and v must be [B, Hkv, L, D] matching q {tuple(q.shape)}; "
                         f"got {tuple(k.shape)} and {tuple(v.shape)}")
    if H % k.shape[1]:
        raise ValueError(f"{where}: query heads {H} must be a multiple of KV heads {k.shape[1]}")
    if page_size < 1 or page_size & (page_size - 1):
        raise ValueError(f"{where}: page_size must be a power of two, got {page_size}")
    if budget // page_size < 2:
        raise ValueError(f"{where}: budget must hold >= 2 pages (own page + one more); got "
                         f"budget={budget}, page_size={page_size}")
    if not tau > 0:
        raise ValueError(f"{where}: tau must be > 0, got {tau}")
    if mode not in ("soft", "hard"):
        raise ValueError(f"{where}: mode must be 'soft' or 'hard', got {mode!r}")
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise ValueError(f"{where}: q, k, v dtypes differ ({q.dtype}, {k.dtype}, {v.dtype})")
    if seqlens is not None and tuple(seqlens.shape) != (B,):
        raise ValueError(f"{where}: seqlens must be [B]={B} lengths, got {tuple(seqlens.shape)}")


def softmask_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    page_size: int = 8,
    budget: int = 512,
    tau: float = 0.5,
    mode: str = "soft",
    lam: float = LAMBDA,
    seqlens: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Causal GQA attention with the UNIQUE soft (or hard) top-k page gate; see module doc."""
    _check(q, k, v, page_size, budget, tau, mode, seqlens)
    if backend == "auto":
        use_triton = q.is_cuda or os.environ.get("TRITON_INTERPRET", "0") == "1"
        backend = "triton" if use_triton and q.dtype in _DTYPES else "reference"
    if backend == "reference":
        return softmask_attention_reference(q, k, v, page_size=page_size, budget=budget, tau=tau,
                                            mode=mode, lam=lam, seqlens=seqlens)
    if backend != "triton":
        raise ValueError("unique_asr/attention/softmask.py: backend must be 'auto', 'triton' or "
                         f"'reference', got {backend!r}")
    if q.dtype not in _DTYPES:
        raise ValueError(f"unique_asr/attention/softmask.py: the Triton backend takes {_DTYPES}, "
                         f"got {q.dtype}; use backend='reference' for float64")
    from unique_asr.attention.triton.softmask import softmask_attention_triton

    return softmask_attention_triton(q, k, v, page_size=page_size, budget=budget, tau=float(tau),
                                     hard=mode == "hard", lam=float(lam), seqlens=seqlens)


class SoftmaskAttention(torch.nn.Module):
    """Module form of ``softmask_attention`` holding its config (for decoder layers)."""

    def __init__(self, page_size: int = 8, budget: int = 512, tau: float = 0.5,
                 mode: str = "soft", lam: float = LAMBDA, backend: str = "auto"):
        super().__init__()
        self.page_size, self.budget, self.tau = page_size, budget, tau
        self.mode, self.lam, self.backend = mode, lam, backend

    def forward(self, q, k, v, seqlens=None):
        return softmask_attention(q, k, v, page_size=self.page_size, budget=self.budget,
                                  tau=self.tau, mode=self.mode, lam=self.lam, seqlens=seqlens,
                                  backend=self.backend)

    def extra_repr(self) -> str:
        return (f"page_size={self.page_size}, budget={self.budget}, tau={self.tau}, "
                f"mode={self.mode}, lam={self.lam}")
