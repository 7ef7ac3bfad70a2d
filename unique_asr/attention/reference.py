"""Plain-PyTorch reference of UNIQUE page statistics and page scores (METHOD.md).

Slow and obviously right: every Triton kernel is tested against the functions here. Shapes use
B = batch, H = query heads, Hkv = KV heads, G = H // Hkv (GQA group), L = tokens, D = head dim,
P = pages, S = page size.
"""

from __future__ import annotations

import torch

LAMBDA = 0.5  # weight of the spread term in the UNIQUE score (paper default)


def page_stats(k: torch.Tensor, page_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and spread of each page of contiguous keys (every sequence L tokens long).

    k: [B, Hkv, L, D] (post-RoPE). A last partial page uses only its real tokens.
    Returns mean [B, Hkv, P, D] and std [B, Hkv, P], std = sqrt(mean ||k||^2 - ||mean||^2),
    i.e. the L2 norm of the per-dimension population std, clamped at 0 before the sqrt.
    Computed and returned in float32.
    """
    return page_stats_varlen(k.float(), full_lengths(k), page_size)


def full_lengths(k: torch.Tensor) -> torch.Tensor:
    """Lengths [B] saying every sequence of k [B, Hkv, L, D] is L tokens long."""
    return torch.full((k.shape[0],), k.shape[2], dtype=torch.long, device=k.device)


def _sqrt_clamped(var: torch.Tensor) -> torch.Tensor:
    """sqrt(max(var, 0)) with a zero gradient where var <= 0 (a one-token page), not NaN."""
    pos = var > 0
    return torch.where(pos, var.where(pos, torch.ones_like(var)).sqrt(), torch.zeros_like(var))


def unique_page_scores(
    q: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, lam: float = LAMBDA
) -> torch.Tensor:
    """score(p) = max over the GQA group of q.mean_p + lam * ||q|| * std_p.

    q: [B, H, D] (one decoding query per sequence), mean: [B, Hkv, P, D], std: [B, Hkv, P].
    Returns [B, Hkv, P] (float32).
    """
    B, H, D = q.shape
    Hkv = mean.shape[1]
    qg = q.float().view(B, Hkv, H // Hkv, D)
    dot = torch.einsum("bhgd,bhpd->bhgp", qg, mean.float())
    off = lam * qg.norm(dim=-1)[..., None] * std.float()[:, :, None, :]
    return (dot + off).amax(2)


# --------------------------------------------------------------------------------------------
# Everything below works on contiguous keys/values k, v: [B, Hkv, L, D] with per-sequence
# lengths [B] (tokens past a sequence's length are ignored). Page p of sequence b holds tokens
# [p*S, min((p+1)*S, len_b)); a sequence has ceil(len_b / S) pages.


def num_pages(lengths: torch.Tensor, page_size: int) -> torch.Tensor:
    """Pages per sequence, ceil(len / S) (int64)."""
    return (lengths.long() + page_size - 1) // page_size


def _page_view(x: torch.Tensor, lengths: torch.Tensor, page_size: int, fill: float):
    """Pad x [B, Hkv, L, D] to whole pages, put `fill` past each length; also return the
    token mask [B, P, S] and the per-page token counts [B, P]."""
    B, Hkv, L, D = x.shape
    P = -(-L // page_size)
    xf = torch.nn.functional.pad(x, (0, 0, 0, P * page_size - L))
    pos = torch.arange(P * page_size, device=x.device)
    valid = pos[None, :] < lengths.to(x.device).long()[:, None]  # [B, P*S]
    xf = xf.masked_fill(~valid[:, None, :, None], fill)
    counts = valid.view(B, P, page_size).sum(-1)
    return xf.view(B, Hkv, P, page_size, D), valid.view(B, P, page_size), counts


def page_stats_varlen(
    k: torch.Tensor, lengths: torch.Tensor, page_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """page_stats for a batch with different lengths: mean [B, Hkv, P, D], std [B, Hkv, P].

    Pages past a sequence's end get mean 0 and std 0. Computed in float64 when k is float64,
    else float32.
    """
    dt = torch.float64 if k.dtype == torch.float64 else torch.float32
    kp, _, counts = _page_view(k.to(dt), lengths, page_size, 0.0)
    c = counts.clamp_min(1).to(dt)[:, None, :]  # [B, 1, P]
    mean = kp.sum(3) / c[..., None]
    sq = (kp * kp).sum((3, 4)) / c
    std = _sqrt_clamped(sq - (mean * mean).sum(-1))
    return mean, std


def quest_page_stats(
    k: torch.Tensor, lengths: torch.Tensor, page_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quest statistics: per-page per-dimension key min and max, [B, Hkv, P, D] each."""
    dt = torch.float64 if k.dtype == torch.float64 else torch.float32
    kmin = _page_view(k.to(dt), lengths, page_size, float("inf"))[0].amin(3)
    kmax = _page_view(k.to(dt), lengths, page_size, float("-inf"))[0].amax(3)
    return kmin, kmax


def meanonly_page_scores(q: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Mean-only baseline: max over the GQA group of q . mean_p (UNIQUE without the std term)."""
    return unique_page_scores(q, mean, torch.zeros(mean.shape[:3], device=mean.device), lam=0.0)


def quest_page_scores(q: torch.Tensor, kmin: torch.Tensor, kmax: torch.Tensor) -> torch.Tensor:
    """Quest baseline: max over the GQA group of sum_d max(q_d min_d, q_d max_d). [B, Hkv, P]."""
    B, H, D = q.shape
    Hkv = kmin.shape[1]
    dt = torch.float64 if kmin.dtype == torch.float64 else torch.float32
    qg = q.to(dt).view(B, Hkv, H // Hkv, 1, D)
    lo, hi = kmin.to(dt)[:, :, None], kmax.to(dt)[:, :, None]
    return torch.maximum(qg * lo, qg * hi).sum(-1).amax(2)


def oracle_page_scores(
    q: torch.Tensor, k: torch.Tensor, lengths: torch.Tensor, page_size: int
) -> torch.Tensor:
    """Oracle: the true max over the page's tokens of q.k, max over the GQA group. [B, Hkv, P]."""
    B, H, D = q.shape
    Hkv = k.shape[1]
    dt = torch.float64 if k.dtype == torch.float64 else torch.float32
    kp, valid, _ = _page_view(k.to(dt), lengths, page_size, 0.0)
    qg = q.to(dt).view(B, Hkv, H // Hkv, D)
    dots = torch.einsum("bhgd,bhpsd->bhgps", qg, kp)
    dots = dots.masked_fill(~valid[:, None, None], float("-inf"))
    return dots.amax(-1).amax(2)


def select_pages(
    scores: torch.Tensor, lengths: torch.Tensor, page_size: int, k: int, sink_pages: int = 0
) -> torch.Tensor:
    """Top-k page selection per (sequence, KV head). Returns logical page indices [B, Hkv, k]
    (int64), sorted ascending, -1 in unused slots.

    A sequence with <= k pages keeps all of them (dense). Otherwise the newest page (the one
    holding the last token) is always kept, then the first `sink_pages` pages, then the
    highest scores; ties go to the lower page index. Scores past a sequence's pages are ignored.
    """
    B, Hkv, _P = scores.shape
    n = num_pages(lengths, page_size).tolist()
    out = torch.full((B, Hkv, k), -1, dtype=torch.long, device=scores.device)
    for b in range(B):
        nb = n[b]
        if nb <= k:
            out[b, :, :nb] = torch.arange(nb, device=scores.device)
            continue
        forced = [nb - 1] + list(range(min(sink_pages, nb - 1)))
        forced = forced[:k]
        for h in range(Hkv):
            s = scores[b, h, :nb].double().clone()
            s[forced] = float("-inf")
            # stable sort: equal scores keep ascending index order, so the lower index wins
            order = torch.sort(-s, stable=True).indices[: k - len(forced)]
            chosen = torch.tensor(forced, device=scores.device, dtype=torch.long)
            out[b, h] = torch.cat([chosen, order]).sort().values
    return out


def sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lengths: torch.Tensor,
    pages: torch.Tensor,
    page_size: int,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(q K^T * scale) V over the tokens of the selected pages only.

    q: [B, H, D]; k, v: [B, Hkv, L, D]; pages: [B, Hkv, kp] logical page indices (-1 = unused),
    shared by the G query heads of a KV head. Returns [B, H, D] in float64 if q is float64,
    else float32.
    """
    B, H, D = q.shape
    Hkv, L = k.shape[1], k.shape[2]
    G = H // Hkv
    dt = torch.float64 if q.dtype == torch.float64 else torch.float32
    scale = D**-0.5 if scale is None else scale
    pos = torch.arange(L, device=q.device)
    tok_page = pos // page_size  # [L]
    pg = pages.to(q.device)
    chosen = (tok_page[None, None, :, None] == pg[:, :, None, :]).any(-1)  # [B, Hkv, L]
    chosen &= pos[None, None, :] < lengths.to(q.device).long()[:, None, None]
    qg = q.to(dt).view(B, Hkv, G, D)
    logits = torch.einsum("bhgd,bhld->bhgl", qg, k.to(dt)) * scale
    logits = logits.masked_fill(~chosen[:, :, None, :], float("-inf"))
    p = torch.softmax(logits, dim=-1)
    return torch.einsum("bhgl,bhld->bhgd", p, v.to(dt)).reshape(B, H, D)


def dense_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lengths: torch.Tensor,
    scale: float | None = None,
) -> torch.Tensor:
    """Full attention of one decoding query per sequence over its first len_b tokens."""
    L = k.shape[2]  # every token is its own page of size 1, all selected
    all_tokens = torch.arange(L, device=q.device).expand(q.shape[0], k.shape[1], L)
    return sparse_attention(q, k, v, lengths, all_tokens, 1, scale)


def score_pages(
    method: str,
    q: torch.Tensor,
    k: torch.Tensor,
    lengths: torch.Tensor,
    page_size: int,
    lam: float = LAMBDA,
) -> torch.Tensor:
    """Page scores [B, Hkv, P] of one selection method from contiguous keys."""
    if method == "unique":
        mean, std = page_stats_varlen(k, lengths, page_size)
        return unique_page_scores(q, mean, std, lam)
    if method == "meanonly":
        mean, _ = page_stats_varlen(k, lengths, page_size)
        return meanonly_page_scores(q, mean)
    if method == "quest":
        return quest_page_scores(q, *quest_page_stats(k, lengths, page_size))
    if method == "oracle":
        return oracle_page_scores(q, k, lengths, page_size)
    raise ValueError(f"reference.score_pages: unknown method {method!r}; use unique, meanonly, "
                     "quest or oracle")


def topk_decode(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lengths: torch.Tensor,
    page_size: int,
    budget: int,
    method: str = "unique",
    sink_pages: int = 0,
    lam: float = LAMBDA,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One whole decoding step of the reference: scores, selection, sparse attention.

    budget is in tokens (k = budget // page_size pages); method 'dense' attends to everything.
    Returns (out [B, H, D], selected logical pages [B, Hkv, k]).
    """
    if budget < page_size:
        raise ValueError(f"reference.topk_decode: budget {budget} is below one page "
                         f"({page_size} tokens); raise the budget")
    if method == "dense":
        out = dense_attention(q, k, v, lengths, scale)
        return out, torch.empty(0, dtype=torch.long)
    kp = budget // page_size
    scores = score_pages(method, q, k, lengths, page_size, lam)
    sel = select_pages(scores, lengths, page_size, kp, sink_pages)
    return sparse_attention(q, k, v, lengths, sel, page_size, scale), sel
