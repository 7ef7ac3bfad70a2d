"""Plain-PyTorch reference of UNIQUE soft-mask (sparsity-aware training) attention.

Materialises the full L x L logits, so it is only for tests and tiny CPU runs; the fused Triton
kernel in ``unique_asr/attention/triton/softmask.py`` must match it. Semantics (docs/method.md,
"Sparsity-aware training"), per batch b, KV head, query position t (causal):

- pages are contiguous runs of ``page_size`` keys; query t lives in its own page c = t // S and
  sees pages 0..c. Pages 0..c-1 are fully in its past and are scored with their full-page
  statistics (mean, std of the S keys, as ``reference.page_stats``). The own page is never
  scored: it always gets gate 1 and always counts toward the budget (docs/method.md decode rule).
- score(t, p) = max over the G query heads of the KV head of
  q.mean_p + lam * stopgrad(||q||) * std_p.
- k = budget // page_size pages. The own page takes one slot, so kp = k - 1 past pages compete:
  theta_t = stopgrad((s_(kp) + s_(kp+1)) / 2) over the past pages (s_(i) the i-th largest), which
  equals the midpoint of the k-th and (k+1)-th largest visible scores with the own page ranked
  first. A query that sees at most k pages (c + 1 <= k) is unmasked (theta = -inf).
- soft: logit(t, j) += log sigmoid((score(t, page(j)) - theta_t) / tau) for past pages.
- hard: logit(t, j) += 0 if score > theta_t else -inf (exactly the top kp past pages + own page).
- seqlens: positions >= seqlens[b] are padding: their keys are never attended and their query
  outputs are 0 (and carry no gradient).
"""

from __future__ import annotations

import torch

from unique_asr.attention.reference import LAMBDA, full_lengths, page_stats_varlen


def full_page_stats(k: torch.Tensor, page_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [B,Hkv,P,D] and std [B,Hkv,P] of each page (reference.page_stats_varlen at full
    length), in k's own dtype, so a float64 reference stays float64."""
    mean, std = page_stats_varlen(k, full_lengths(k), page_size)
    return mean.to(k.dtype), std.to(k.dtype)


def query_page_scores(
    q: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, lam: float = LAMBDA
) -> torch.Tensor:
    """score [B,Hkv,L,P] = GQA max of q.mean_p + lam * stopgrad(||q||) * std_p, every query."""
    B, H, L, D = q.shape
    Hkv = mean.shape[1]
    qg = q.view(B, Hkv, H // Hkv, L, D)
    dot = torch.einsum("bhgld,bhpd->bhglp", qg, mean)
    off = lam * qg.norm(dim=-1).detach()[..., None] * std[:, :, None, None, :]
    return (dot + off).amax(2)


def page_thresholds(scores: torch.Tensor, page_size: int, k_pages: int) -> torch.Tensor:
    """theta [B,Hkv,L] (no grad): midpoint of the (k-1)-th and k-th largest past-page scores.

    Rows that see at most k pages get -inf (unmasked).
    """
    _B, _Hkv, L, P = scores.shape
    t = torch.arange(L, device=scores.device)
    own = t // page_size
    past = torch.arange(P, device=scores.device)[None, :] < own[:, None]  # [L, P]
    s = scores.detach().masked_fill(~past, float("-inf"))
    kp = k_pages - 1
    srt = s.sort(dim=-1, descending=True).values
    n = min(kp + 1, P)
    top = torch.nn.functional.pad(srt[..., :n], (0, kp + 1 - n), value=float("-inf"))
    theta = (top[..., kp - 1] + top[..., kp]) / 2
    masked = own >= k_pages  # c + 1 > k visible pages
    return torch.where(masked, theta, torch.full_like(theta, float("-inf")))


def softmask_bias(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    page_size: int,
    budget: int,
    tau: float,
    mode: str,
    lam: float = LAMBDA,
) -> torch.Tensor:
    """Additive page bias [B,Hkv,L,L] (log gate per key token; 0 outside past pages)."""
    _B, _Hkv, L, _D = k.shape
    k_pages = budget // page_size
    mean, std = full_page_stats(k, page_size)
    scores = query_page_scores(q, mean, std, lam)
    theta = page_thresholds(scores, page_size, k_pages)[..., None]
    t = torch.arange(L, device=q.device)
    P = scores.shape[-1]
    past = torch.arange(P, device=q.device)[None, :] < (t // page_size)[:, None]
    if mode == "soft":
        z = (scores - theta) / tau
        bias = torch.nn.functional.logsigmoid(z)
    else:
        bias = torch.where(scores > theta, 0.0, float("-inf")).to(scores.dtype)
    bias = torch.where(past, bias, torch.zeros_like(bias))
    return bias.repeat_interleave(page_size, dim=-1)[..., :L]


def softmask_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    page_size: int = 8,
    budget: int = 512,
    tau: float = 1.0,
    mode: str = "soft",
    lam: float = LAMBDA,
    seqlens: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft/hard UNIQUE page-masked causal attention, q [B,H,L,D], k/v [B,Hkv,L,D] -> [B,H,L,D].

    Differentiable through torch autograd (gradients into q, k, v, including through the page
    means/stds); theta and ||q|| in the score offset are stop-gradient.
    """
    B, H, L, D = q.shape
    Hkv = k.shape[1]
    G = H // Hkv
    bias = softmask_bias(
        q, k, page_size=page_size, budget=budget, tau=tau, mode=mode, lam=lam
    ).repeat_interleave(G, dim=1)
    logits = torch.einsum("bhld,bhmd->bhlm", q, k.repeat_interleave(G, dim=1)) / D**0.5 + bias
    t = torch.arange(L, device=q.device)
    allowed = (t[None, :] <= t[:, None])[None]  # [1, L, L]
    if seqlens is not None:
        n = seqlens.to(q.device).view(B, 1, 1)
        allowed = allowed & (t.view(1, 1, L) < n) & (t.view(1, L, 1) < n)
    allowed = allowed[:, None]  # [B or 1, 1, L, L]
    logits = logits.masked_fill(~allowed, float("-inf"))
    row_ok = allowed.any(-1, keepdim=True)
    probs = torch.softmax(logits.masked_fill(~row_ok, 0.0), dim=-1) * row_ok
    return torch.einsum("bhlm,bhmd->bhld", probs, v.repeat_interleave(G, dim=1))
