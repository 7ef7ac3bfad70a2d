"""Decoding KV cache backends unique | quest | meanonly | oracle (and paged_dense) for the decoder.

Why: the speech LLM decodes through the cache protocol of models/attention.py (prefill / step /
advance / reorder / lens); this module implements it on top of the UNIQUE library
(attention/paged_cache.PagedKVCache + attention/api.unique_decode), so `decode.attention=unique
decode.budget=128` swaps dense decoding for top-k page-sparse decoding (METHOD.md):
- prefill: dense causal attention over the right-padded prompt ([audio][task], per-sequence
  lengths); the post-RoPE K/V of each sequence's real tokens go into the paged cache, which
  keeps the page statistics (sum, sum of squares, quest min/max) up to date.
- step: the new token's K/V are appended (one page-table slot per batch row), then the query
  attends to the top-k pages chosen by `method` within `budget` tokens (newest page and
  `sink_pages` first pages always kept; a row with <= budget/page_size pages is dense).
- reorder(index): rows are sequence slots of the cache, so dropping rows frees slots, a
  permutation is a relabelling, and a row used twice (beam search) gets its pages copied.

Attention backend (cfg["backend"]): auto = Triton kernels through unique_decode on CUDA and a
vectorised PyTorch step on CPU ("torch"); "reference" = unique_decode's reference path, which
is exact but loops in Python and is O(L^2) when dense (fine for tests, too slow for long-form);
"triton" forces the kernels (CPU: TRITON_INTERPRET=1). The "torch" step follows
reference.topk_decode (same score formulas, same top-k with ties to the lower page index, same
masked softmax), vectorised over sequences and heads, reading the cache's page statistics and
only the selected pages' K/V (as the kernels do), so its cost follows the budget.

cfg keys (model.cfg.attention_cfg; the decode entry point fills them from decode.*): budget
(tokens, default 512), page_size (8), sink_pages (0), lam (0.5), backend (auto), dense_layers
(decoder layers that attend densely, default none; METHOD.md's experiment switch; from the
command line: +decode.dense_layers=[0]).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from unique_asr.attention import reference
from unique_asr.attention.api import METHODS, unique_decode
from unique_asr.attention.paged_cache import PagedKVCache

STEP_BACKENDS = ("auto", "torch", "reference", "triton")


def decode_attention_cfg(dcfg: dict) -> dict:
    """The cache cfg for a decode config (decode.budget, page_size, sink_pages, lam, backend)."""
    return {
        "budget": int(dcfg.get("budget") or 512),
        "page_size": int(dcfg.get("page_size") or 8),
        "sink_pages": int(dcfg.get("sink_pages") or 0),
        "lam": float(dcfg.get("lam", reference.LAMBDA)),
        "backend": str(dcfg.get("attention_backend") or "auto"),
        "dense_layers": [int(x) for x in dcfg.get("dense_layers") or []],
    }


# ------------------------------------------------------------------ vectorised CPU decode step
def select_pages(scores: torch.Tensor, lengths: torch.Tensor, page_size: int, k: int,
                 sink_pages: int = 0) -> torch.Tensor:
    """reference.select_pages without Python loops: logical pages [B, Hkv, k] (int64, -1 in
    unused slots; unsorted).

    Rows with <= k pages keep all of them; otherwise the newest page, then the first
    `sink_pages` pages (the forced pages truncated to k, newest first), then the highest scores
    with ties to the lower page index (a stable sort, as in the reference).
    """
    P = scores.shape[2]
    n = reference.num_pages(lengths, page_size).to(scores.device)[:, None, None]  # [B,1,1]
    idx = torch.arange(P, device=scores.device)[None, None, :]
    key = scores.double().masked_fill(idx >= n, float("-inf"))
    key = torch.where(idx < torch.clamp(n - 1, max=sink_pages), torch.finfo(torch.float64).max,
                      key)
    key = torch.where(idx == n - 1, float("inf"), key)
    kk = min(k, P)
    order = torch.sort(-key, dim=-1, stable=True).indices[..., :kk]
    order = torch.where(torch.arange(kk, device=scores.device) < n, order, -1)
    return F.pad(order, (0, k - kk), value=-1)


def select_mask(scores: torch.Tensor, lengths: torch.Tensor, page_size: int, k: int,
                sink_pages: int = 0) -> torch.Tensor:
    """select_pages as a page mask [B, Hkv, P] (bool)."""
    sel = select_pages(scores, lengths, page_size, k, sink_pages)
    mask = torch.zeros(scores.shape[0], scores.shape[1], scores.shape[2] + 1, dtype=torch.bool,
                       device=scores.device)
    return mask.scatter_(-1, sel.masked_fill(sel < 0, scores.shape[2]), True)[..., :-1]


def page_scores(q, cache: PagedKVCache, layer: int, pages: torch.Tensor, lens: torch.Tensor,
                method: str, lam: float = reference.LAMBDA) -> torch.Tensor:
    """Scores [B, Hkv, P] of physical `pages` [B, P] from the cache's page statistics (oracle:
    from the keys), with the reference's formulas. Pages past a sequence's end are garbage."""
    if method in ("unique", "meanonly"):
        mean = cache.mean[layer][pages].transpose(1, 2)  # [B, Hkv, P, D]
        std = cache.std[layer][pages].transpose(1, 2)
        return reference.unique_page_scores(q, mean, std, lam if method == "unique" else 0.0)
    if method == "quest":
        return reference.quest_page_scores(q, cache.kmin[layer][pages].transpose(1, 2),
                                           cache.kmax[layer][pages].transpose(1, 2))
    if method == "oracle":
        B, H, D = q.shape
        Hkv, S = cache.num_kv_heads, cache.page_size
        k = cache.k[layer][pages]  # [B, P, Hkv, S, D]
        dt = torch.float64 if q.dtype == torch.float64 else torch.float32
        dots = torch.einsum("bhgd,bphsd->bhgps", q.to(dt).view(B, Hkv, H // Hkv, D), k.to(dt))
        pos = torch.arange(pages.shape[1] * S, device=q.device).view(-1, S)
        valid = pos[None] < lens[:, None, None]  # [B, P, S]
        return dots.masked_fill(~valid[:, None, None], float("-inf")).amax(-1).amax(2)
    raise ValueError(f"page_scores: no scores for method {method!r}")


def torch_decode(q: torch.Tensor, cache: PagedKVCache, layer: int, seqs: list[int], budget: int,
                 method: str, sink_pages: int = 0, lam: float = reference.LAMBDA) -> torch.Tensor:
    """One decoding step of one layer in plain PyTorch at O(pages + budget) cost: q [B, H, D]
    -> [B, H, D] (float32 math unless q is float64, like reference.sparse_attention).

    Scores come from the cache's incremental page statistics (as the Triton path reads them),
    so they equal the reference's up to float rounding; only the selected pages' K/V are read.
    """
    pt, lens = cache.batch(seqs)
    B, H, D = q.shape
    Hkv, S, kp = cache.num_kv_heads, cache.page_size, budget // cache.page_size
    lens = lens.long()
    n = reference.num_pages(lens, S)
    P = int(n.max())
    phys_all = pt[:, :P].long().clamp_min(0)  # [B, P]
    if method == "dense" or P <= kp:
        logical = torch.arange(P, device=q.device).expand(B, Hkv, P)
    else:
        scores = page_scores(q, cache, layer, phys_all, lens, method, lam)
        logical = select_pages(scores, lens, S, kp, sink_pages)  # [B, Hkv, kp]
    k_sel = logical.shape[2]
    phys = phys_all.gather(1, logical.clamp_min(0).reshape(B, -1)).view(B, Hkv, k_sel)
    heads = torch.arange(Hkv, device=q.device)[None, :, None]
    kk, vv = cache.k[layer][phys, heads], cache.v[layer][phys, heads]  # [B, Hkv, k, S, D]
    pos = logical[..., None] * S + torch.arange(S, device=q.device)  # [B, Hkv, k, S]
    valid = (logical[..., None] >= 0) & (pos < lens[:, None, None, None])
    dt = torch.float64 if q.dtype == torch.float64 else torch.float32
    qg = q.to(dt).view(B, Hkv, H // Hkv, D)
    logits = torch.einsum("bhgd,bhksd->bhgks", qg, kk.to(dt)) * D**-0.5
    logits = logits.masked_fill(~valid[:, :, None], float("-inf")).flatten(3)
    p = torch.softmax(logits, dim=-1)
    return torch.einsum("bhgt,bhtd->bhgd", p, vv.to(dt).flatten(2, 3)).reshape(B, H, D)


# ------------------------------------------------------------------ the cache backend
def _expand_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


class PagedAttentionCache:
    """The decoder's KV cache protocol on a PagedKVCache; decode steps use unique_decode."""

    def __init__(self, n_layers, batch, max_len, n_kv_heads, head_dim, device, dtype, cfg=None,
                 method: str = "unique"):
        cfg = dict(cfg or {})
        if method not in METHODS:
            raise ValueError(f"PagedAttentionCache: method must be one of {METHODS}, "
                             f"got {method!r}")
        self.method = method
        self.page_size = int(cfg.get("page_size", 8))
        self.budget = int(cfg.get("budget") or 512)
        if self.budget < self.page_size:
            raise ValueError(f"decode.budget={self.budget} is below one KV page "
                             f"({self.page_size} tokens); raise decode.budget")
        self.sink_pages = int(cfg.get("sink_pages", 0))
        self.lam = float(cfg.get("lam", reference.LAMBDA))
        self.backend = str(cfg.get("backend", "auto"))
        self.dense_layers = {int(x) for x in cfg.get("dense_layers") or []}
        if self.backend not in STEP_BACKENDS:
            raise ValueError(f"attention backend {self.backend!r} unknown; use one of "
                             f"{STEP_BACKENDS} (decode.attention_backend)")
        self.n_layers, self.n_kv_heads, self.head_dim = n_layers, n_kv_heads, head_dim
        self.max_len = max_len
        self.pages_per_seq = -(-max_len // self.page_size)
        self.device, self.dtype = torch.empty(0, device=device).device, dtype
        self.kv = self._pool(batch)
        self.slots = [self.kv.add_sequence() for _ in range(batch)]
        self.lens = torch.zeros(batch, dtype=torch.long, device=self.device)
        self._prompt: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _pool(self, rows: int) -> PagedKVCache:
        return PagedKVCache(self.n_layers, self.n_kv_heads, self.head_dim,
                            rows * self.pages_per_seq, rows, self.pages_per_seq,
                            self.page_size, self.dtype, self.device,
                            quest=self.method == "quest")

    # ---------------------------------------------------------------- prefill
    def prefill(self, layer: int, q, k, v, lens: torch.Tensor) -> torch.Tensor:
        """Dense causal attention over the right-padded prompt (q [B,H,L,D], k/v [B,Hkv,L,D]);
        the real tokens (lens[b] per row) are paged once every layer has been seen."""
        if k.shape[2] > self.max_len:
            raise ValueError(f"prompt of {k.shape[2]} tokens exceeds cache max_len="
                             f"{self.max_len}")
        if any(self.kv.seq_length(s) for s in self.slots):
            raise RuntimeError("PagedAttentionCache.prefill: the cache already holds a prompt; "
                               "build a new cache per batch (model.new_cache)")
        g = q.shape[1] // k.shape[1]
        out = F.scaled_dot_product_attention(q, _expand_kv(k, g), _expand_kv(v, g),
                                             is_causal=True)
        self._prompt[layer] = (k, v)
        if len(self._prompt) == self.n_layers:
            self._write_prompt(lens)
        return out

    def _write_prompt(self, lens: torch.Tensor) -> None:
        n = lens.tolist()
        for b, s in enumerate(self.slots):
            self.kv.reserve([s], int(n[b]))
            for layer in range(self.n_layers):
                k, v = self._prompt[layer]
                self.kv.write(layer, k[b, :, : n[b]].transpose(0, 1),
                              v[b, :, : n[b]].transpose(0, 1))
        self._prompt.clear()
        self.lens = lens.to(self.device, torch.long).clone()

    # ---------------------------------------------------------------- decode steps
    def step(self, layer: int, q, k, v) -> torch.Tensor:
        """Append one token per row (q [B,H,1,D], k/v [B,Hkv,1,D]) and attend sparsely."""
        if layer == 0:
            self.kv.reserve(self.slots, 1)
        self.kv.write(layer, k[:, :, 0], v[:, :, 0])
        return self.attend(q[:, :, 0], layer)[:, :, None].to(q.dtype)

    def attend(self, q: torch.Tensor, layer: int) -> torch.Tensor:
        """q [B, H, D] of the rows' newest tokens over the paged cache -> [B, H, D]."""
        backend = self.backend
        if backend == "auto":
            backend = "triton" if q.is_cuda else "torch"
        budget = max(self.budget, self.page_size)
        method = "dense" if layer in self.dense_layers else self.method
        if backend == "torch":
            return torch_decode(q, self.kv, layer, self.slots, budget, method,
                                self.sink_pages, self.lam)
        return unique_decode(q, self.kv, layer, budget, method, self.slots, self.lam,
                             self.sink_pages, backend=backend)

    def set_lens(self, lens: torch.Tensor) -> None:
        self.lens = lens.to(self.device, torch.long).clone()
        stored = [self.kv.seq_length(s) for s in self.slots]
        if stored != self.lens.tolist():
            raise RuntimeError(f"PagedAttentionCache.set_lens: lengths {self.lens.tolist()} "
                               f"differ from the paged prompt's {stored}")

    def advance(self, n: int = 1) -> None:
        self.lens = self.lens + n

    # ---------------------------------------------------------------- beam search / compaction
    def reorder(self, index: torch.Tensor) -> None:
        """Row i becomes old row index[i]: unused rows free their slots, the first use of a row
        keeps its slot, and each further use gets a fresh slot holding a copy of its pages."""
        idx = [int(i) for i in index.tolist()]
        if len(idx) > self.kv.max_seqs:
            self._grow(len(idx))
        used = set(idx)
        for r, s in enumerate(self.slots):
            if r not in used:
                self.kv.free_sequence(s)
        new, seen, copies = [], set(), []
        for i in idx:
            if i in seen:
                copies.append((self.slots[i], self.kv.add_sequence()))
                new.append(copies[-1][1])
            else:
                seen.add(i)
                new.append(self.slots[i])
        self._copy(self.kv, self.kv, copies)
        self.slots = new
        self.lens = self.lens.index_select(0, index.to(self.lens.device))

    def _grow(self, rows: int) -> None:
        """Move every row into a pool with room for `rows` sequences."""
        pool = self._pool(rows)
        slots = [pool.add_sequence() for _ in self.slots]
        self._copy(self.kv, pool, list(zip(self.slots, slots)))
        self.kv, self.slots = pool, slots

    def _copy(self, src: PagedKVCache, dst: PagedKVCache, pairs: list[tuple[int, int]]) -> None:
        """Give each dst slot (empty) the tokens, pages and page statistics of its src slot."""
        src_pages, dst_pages = [], []
        for s, d in pairs:
            n = src.seq_length(s)
            if n == 0:
                continue
            dst.reserve([d], n)  # allocates the pages and counts their tokens
            npg = -(-n // self.page_size)
            src_pages.append(src.page_table[s, :npg])
            dst_pages.append(dst.page_table[d, :npg])
        if not src_pages:
            return
        si, di = torch.cat(src_pages).long(), torch.cat(dst_pages).long()
        names = ["k", "v", "ksum", "ksq", "mean", "std"] + (["kmin", "kmax"] if src.quest else [])
        for name in names:
            getattr(dst, name)[:, di] = getattr(src, name)[:, si]


PAGED_CACHE_BACKENDS = {
    name: partial(PagedAttentionCache, method=method)
    for name, method in (("unique", "unique"), ("quest", "quest"), ("meanonly", "meanonly"),
                         ("oracle", "oracle"), ("paged_dense", "dense"))
}
