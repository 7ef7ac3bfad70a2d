"""Plain-PyTorch reference of UNIQUE page statistics, page scores, selection and decoding
(docs/method.md).

Plainly written and obviously right: every Triton kernel is tested against the functions here.
decode_step() is the whole reference decoding step on a PagedKVCache (api.unique_decode with
impl="reference", and so CPU decoding); it is vectorised over sequences and heads and reads only
the selected pages, so its cost follows the budget. Shapes use
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
    holding the last token) is always kept, then the first `sink_pages` pages (the forced pages
    truncated to k, newest first), then the highest scores; ties go to the lower page index (a
    stable sort). Scores past a sequence's pages are ignored.
    """
    P = scores.shape[2]
    dev = scores.device
    n = num_pages(lengths, page_size).to(dev)[:, None, None]  # [B, 1, 1]
    idx = torch.arange(P, device=dev)[None, None, :]
    key = scores.double().masked_fill(idx >= n, float("-inf"))
    key = torch.where(idx < torch.clamp(n - 1, max=sink_pages), torch.finfo(torch.float64).max,
                      key)
    key = torch.where(idx == n - 1, float("inf"), key)
    kk = min(k, P)
    order = torch.sort(-key, dim=-1, stable=True).indices[..., :kk]
    order = torch.where(torch.arange(kk, device=dev) < n, order, P)  # P marks an unused slot
    order = order.sort(-1).values
    order = torch.nn.functional.pad(order, (0, k - kk), value=P)
    return order.masked_fill(order == P, -1)


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


def paged_page_scores(
    q: torch.Tensor, cache, layer: int, pages: torch.Tensor, lengths: torch.Tensor, method: str,
    lam: float = LAMBDA,
) -> torch.Tensor:
    """Page scores [B, Hkv, P] of the physical `pages` [B, P] of a PagedKVCache (its page
    statistics; oracle: its keys), with the formulas above. Pages past a sequence's end hold
    garbage scores (select_pages ignores them)."""
    if method in ("unique", "meanonly"):
        mean = cache.page_means(layer)[pages].transpose(1, 2)  # [B, Hkv, P, D]
        std = cache.std[layer][pages].transpose(1, 2)
        return unique_page_scores(q, mean, std, lam if method == "unique" else 0.0)
    if method == "quest":
        return quest_page_scores(q, cache.kmin[layer][pages].transpose(1, 2),
                                 cache.kmax[layer][pages].transpose(1, 2))
    if method == "oracle":
        B, H, D = q.shape
        Hkv, S = cache.num_kv_heads, cache.page_size
        dt = torch.float64 if q.dtype == torch.float64 else torch.float32
        k = cache.k[layer][pages].to(dt)  # [B, P, Hkv, S, D]
        dots = torch.einsum("bhgd,bphsd->bhgps", q.to(dt).view(B, Hkv, H // Hkv, D), k)
        pos = torch.arange(pages.shape[1] * S, device=q.device).view(-1, S)
        valid = pos[None] < lengths.long()[:, None, None]  # [B, P, S]
        return dots.masked_fill(~valid[:, None, None], float("-inf")).amax(-1).amax(2)
    raise ValueError(f"reference.paged_page_scores: unknown method {method!r}; use unique, "
                     "meanonly, quest or oracle")


def decode_step(
    q: torch.Tensor,
    cache,
    layer: int,
    seqs: list[int],
    budget: int,
    method: str = "unique",
    sink_pages: int = 0,
    lam: float = LAMBDA,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One decoding step of one layer on a PagedKVCache: page scores from the cache's page
    statistics, select_pages, softmax attention over the selected pages' tokens only.

    q: [B, H, D], one query per sequence slot in `seqs`; budget in tokens (k = budget //
    page_size pages); method 'dense', or a sequence batch with <= k pages, attends to every
    page. Reads only the selected pages' K/V, so its cost follows the budget. Math in float64
    when q is float64, else float32. Returns (out [B, H, D], the selected logical pages
    [B, Hkv, k], or None when every page was attended).
    """
    if budget < cache.page_size:
        raise ValueError(f"reference.decode_step: budget {budget} is below one page "
                         f"({cache.page_size} tokens); raise the budget")
    pt, lens = cache.batch(seqs)
    B, H, D = q.shape
    Hkv, S, kp = cache.num_kv_heads, cache.page_size, budget // cache.page_size
    lens = lens.long()
    P = int(num_pages(lens, S).max())
    phys_all = pt[:, :P].long().clamp_min(0)  # [B, P]
    sel = None
    if method == "dense" or P <= kp:
        logical = torch.arange(P, device=q.device).expand(B, Hkv, P)
    else:
        scores = paged_page_scores(q, cache, layer, phys_all, lens, method, lam)
        logical = sel = select_pages(scores, lens, S, kp, sink_pages)  # [B, Hkv, kp]
    k_sel = logical.shape[2]
    phys = phys_all.gather(1, logical.clamp_min(0).reshape(B, -1)).view(B, Hkv, k_sel)
    heads = torch.arange(Hkv, device=q.device)[None, :, None]
    kk, vv = cache.k[layer][phys, heads], cache.v[layer][phys, heads]  # [B, Hkv, k, S, D]
    pos = logical[..., None] * S + torch.arange(S, device=q.device)  # [B, Hkv, k, S]
    valid = (logical[..., None] >= 0) & (pos < lens[:, None, None, None])
    dt = torch.float64 if q.dtype == torch.float64 else torch.float32
    scale = D**-0.5 if scale is None else scale
    qg = q.to(dt).view(B, Hkv, H // Hkv, D)
    logits = torch.einsum("bhgd,bhksd->bhgks", qg, kk.to(dt)) * scale
    logits = logits.masked_fill(~valid[:, :, None], float("-inf")).flatten(3)
    p = torch.softmax(logits, dim=-1)
    out = torch.einsum("bhgt,bhtd->bhgd", p, vv.to(dt).flatten(2, 3)).reshape(B, H, D)
    return out, sel
