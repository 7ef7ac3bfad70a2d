"""One call per decoding step of UNIQUE top-k page-sparse attention, plus its pieces.

Interface for a decoder layer (the generation loop owns one PagedKVCache for all layers):

    from unique_asr.attention.paged_cache import PagedKVCache
    from unique_asr.attention.api import SparseConfig, unique_decode

    sc = SparseConfig(method="unique", budget=512)
    cache = PagedKVCache(num_layers, num_kv_heads, head_dim, num_pages, max_seqs,
                         page_size=sc.page_size, dtype=torch.bfloat16, device="cuda",
                         quest=(sc.method == "quest"))
    # prefill (dense): cache.reserve([s], T); in each layer cache.write(layer, k, v) with
    # post-RoPE k, v [T, Hkv, D], and attend densely as usual.
    # each decode step: cache.reserve(seqs, 1); then in layer i:
    cache.write(i, k_new, v_new)                     # [B, Hkv, D] post-RoPE, B = len(seqs)
    out = decode(q, cache, i, sc, seqs=seqs)          # q [B, H, D]
    # or, argument by argument: unique_decode(q, cache, i, budget=512, method="unique", ...)

METHODS is the one list of decode attention methods (docs/method.md); every other part of the
package (the model's KV cache registry, the decode config) derives from it. budget is in tokens
(k = budget // page_size pages; a sequence with <= k pages is attended densely). The newest
page is always kept and counts toward the budget; `sink_pages` first pages are kept too.
impl "auto" runs the Triton kernels when q is on CUDA and the reference (reference.decode_step,
float64-capable) otherwise; "triton" forces the kernels (on CPU only under TRITON_INTERPRET=1),
"reference" forces the reference. Returns [B, H, D] in q's dtype (rows follow `seqs`).

Pieces, for benchmarks and experiments: page_scores(), select(), attend(); each takes the same
(q, cache, layer, seqs) arguments. sparse_step() is the whole Triton step on a prepared batch
(what unique_decode runs; graph-capturable).

A decode step captured in a CUDA graph passes rows=StepRows(...) to unique_decode / decode: the
rows' page-table rows, lengths and slots already on the device, and a fixed page bound, so the
Triton path reads no host state and keeps its shapes from step to step (only the choice between
dense and sparse attention is made on the host, from the cache's host-side lengths; a captured
step holds for the steps that make the same choice).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from . import reference
from .paged_cache import STATS_DTYPES, PagedKVCache

METHODS = ("dense", "unique", "quest", "meanonly", "oracle")
IMPLS = ("auto", "triton", "reference")


@dataclass
class SparseConfig:
    """How the decoder attends over its KV cache while generating (`decode.sparse.*`).

    Prefill is always dense; decode steps use `method` (METHODS) within `budget` tokens.
    """

    method: str = "dense"   # dense | unique | quest | meanonly | oracle
    budget: int = 512       # tokens attended per step (budget // page_size pages)
    page_size: int = 8      # tokens per KV page
    lam: float = 0.5        # unique: weight of the std term in the page score
    sink_pages: int = 0     # first pages always kept (besides the newest page)
    impl: str = "auto"      # auto (triton on CUDA tensors, reference otherwise) | triton | reference
    # page means the unique/meanonly score reads: bf16 = in the cache's dtype (bf16 when decoding
    # in bf16); fp8 / int8 = one byte (e4m3 / symmetric integer) with a float32 scale per
    # (page, KV head): half the bytes; int8 selects closer to bf16 (bench/NOTES.md)
    stats_dtype: str = "bf16"
    dense_layers: list[int] = field(default_factory=list)  # decoder layers that attend densely

    def validate(self) -> SparseConfig:
        """Raise a ValueError naming `decode.sparse.<field>` and its valid values; returns self."""
        def bad(name, why):
            raise ValueError(f"decode.sparse.{name}={getattr(self, name)!r}: {why}")

        if self.method not in METHODS:
            bad("method", f"use one of {', '.join(METHODS)}")
        if self.impl not in IMPLS:
            bad("impl", f"use one of {', '.join(IMPLS)}")
        if self.stats_dtype not in STATS_DTYPES:
            bad("stats_dtype", f"use one of {', '.join(STATS_DTYPES)}")
        if not isinstance(self.page_size, int) or self.page_size < 1:
            bad("page_size", "use a positive int (tokens per KV page)")
        if not isinstance(self.budget, int) or self.budget < 1:
            bad("budget", "use a positive int (tokens)")
        if self.method != "dense" and (self.budget < self.page_size
                                       or self.budget % self.page_size):
            bad("budget", f"use a multiple of decode.sparse.page_size={self.page_size} "
                          "(at least one page)")
        if not isinstance(self.sink_pages, int) or self.sink_pages < 0:
            bad("sink_pages", "use an int >= 0")
        if float(self.lam) < 0:
            bad("lam", "use a weight >= 0")
        if any(not isinstance(x, int) or x < 0 for x in self.dense_layers):
            bad("dense_layers", "use a list of decoder layer indices (ints >= 0)")
        return self


@dataclass
class StepRows:
    """The rows of one decode step prepared on the device (models/paged_attention_cache.py's
    step view), so that the Triton step reads no host value and, with max_pages set, keeps fixed
    shapes: what a CUDA graph needs to replay it."""

    slots: list[int]           # each row's sequence slot (host: input checks, impl=reference)
    index: torch.Tensor        # the same slots, [B] long on the cache's device (1-byte centres)
    page_table: torch.Tensor   # [B, max_pages_per_seq] int32: the slots' page-table rows
    lengths: torch.Tensor      # [B] int32: the slots' lengths (this step's token included)
    max_pages: int | None = None  # pages scored per row; None: the longest row's (host value)


def resolve_impl(q: torch.Tensor, impl: str) -> str:
    """triton or reference for `impl` (auto: triton on CUDA tensors, reference otherwise)."""
    if impl not in IMPLS:
        raise ValueError(f"api: impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return "triton" if q.is_cuda else "reference"
    if impl == "triton" and not q.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError("api: impl='triton' on CPU needs TRITON_INTERPRET=1; "
                         "use impl='reference' or a CUDA tensor")
    return impl


def _seq_list(cache: PagedKVCache, seqs) -> list[int]:
    if seqs is None:
        return cache.active_sequences()
    return [int(s) for s in (seqs.tolist() if torch.is_tensor(seqs) else seqs)]


def check_inputs(
    q: torch.Tensor, cache: PagedKVCache, layer: int, seqs: list[int], budget: int, method: str
) -> None:
    """Raise a ValueError naming the argument and the fix when inputs do not fit the cache."""
    if not isinstance(cache, PagedKVCache):
        raise TypeError(f"unique_decode: cache must be a PagedKVCache, got {type(cache)}")
    if method not in METHODS:
        raise ValueError(f"unique_decode: method must be one of {METHODS}, got {method!r}")
    if q.dim() != 3:
        raise ValueError(f"unique_decode: q must be [B, H, D] (one query per sequence), "
                         f"got shape {tuple(q.shape)}")
    B, H, D = q.shape
    if B != len(seqs):
        raise ValueError(f"unique_decode: q has {B} rows but {len(seqs)} sequences are "
                         "selected; pass seqs= with one slot per row of q")
    if D != cache.head_dim or H % cache.num_kv_heads:
        raise ValueError(f"unique_decode: q is [B, {H}, {D}] but the cache has head_dim "
                         f"{cache.head_dim} and {cache.num_kv_heads} KV heads (H must be a "
                         "multiple of the KV heads)")
    if q.device != cache.device:
        raise ValueError(f"unique_decode: q is on {q.device}, the cache on {cache.device}")
    if q.dtype not in (cache.dtype, torch.float32, torch.float64):
        raise ValueError(f"unique_decode: q dtype {q.dtype} differs from the cache dtype "
                         f"{cache.dtype}; cast q")
    if not 0 <= layer < cache.num_layers:
        raise ValueError(f"unique_decode: layer {layer} not in [0, {cache.num_layers})")
    if not isinstance(budget, int) or budget < cache.page_size:
        raise ValueError(f"unique_decode: budget (tokens) must be an int >= the page size "
                         f"{cache.page_size}, got {budget!r}")
    if method == "quest" and not cache.quest:
        raise ValueError("unique_decode: method='quest' needs PagedKVCache(..., quest=True)")
    for s in seqs:
        if cache.seq_length(s) < 1:
            raise ValueError(f"unique_decode: sequence {s} is empty; reserve and write its "
                             "tokens first")


def _oracle_scores(q, cache, layer, pt, lens, P, sink_pages):
    """True max of q.k per page (reference.paged_page_scores; no kernel), with the newest page
    +inf and the sink pages forced as the score kernels force them."""
    S = cache.page_size
    sc = reference.paged_page_scores(q, cache, layer, pt[:, :P].long().clamp_min(0), lens,
                                     "oracle").float()
    idx = torch.arange(P, device=q.device)
    n = (lens.long() + S - 1) // S
    sc = torch.where(idx[None, None] < sink_pages, torch.finfo(torch.float32).max, sc)
    return torch.where(idx[None, None] == (n - 1)[:, None, None], float("inf"), sc)


def page_scores(q, cache, layer, method="unique", seqs=None, lam=reference.LAMBDA,
                sink_pages=0, batch=None, max_pages=None):
    """Triton page scores [B, Hkv, P] float32 with the newest page +inf and sinks forced."""
    from .triton.score import quest_scores, unique_scores

    if not torch.is_tensor(seqs) or batch is None or max_pages is None:
        seqs = _seq_list(cache, seqs)  # a device tensor with batch and max_pages is used as is
    pt, lens = batch if batch is not None else cache.batch(seqs)
    S = cache.page_size
    P = max_pages or -(-max(cache.seq_length(s) for s in seqs) // S)
    if method in ("unique", "meanonly"):
        scale = None if cache.mean_scale is None else cache.mean_scale[layer]
        return unique_scores(q, cache.mean[layer], cache.std[layer], pt, lens, S,
                             lam=lam if method == "unique" else 0.0, sink_pages=sink_pages,
                             max_pages=P, mean_scale=scale,
                             mean_center=cache.row_centers(layer, seqs))
    if method == "quest":
        return quest_scores(q, cache.kmin[layer], cache.kmax[layer], pt, lens, S,
                            sink_pages=sink_pages, max_pages=P)
    if method == "oracle":
        return _oracle_scores(q, cache, layer, pt, lens, P, sink_pages)
    raise ValueError(f"page_scores: no scores for method {method!r}")


def select(scores, cache, budget, seqs=None, batch=None):
    """Top-k physical page ids [B, Hkv, budget // page_size] int32 (unused slots -1)."""
    from .triton.topk import topk_pages

    pt, lens = batch if batch is not None else cache.batch(_seq_list(cache, seqs))
    return topk_pages(scores, lens, cache.page_size, budget // cache.page_size, page_table=pt)


def attend(q, cache, layer, pages=None, seqs=None, scale=None, batch=None, num_splits=None,
           out=None):
    """Paged decode attention over `pages` [B, Hkv, k] (None = dense over all pages)."""
    from .triton.decode import paged_decode

    pt, lens = batch if batch is not None else cache.batch(_seq_list(cache, seqs))
    if pages is None:
        pages = pt.unsqueeze(1)
    return paged_decode(q, cache.k[layer], cache.v[layer], pages, pt, lens, scale=scale,
                        num_splits=num_splits, out=out)


_STREAMS: dict = {}


def _side_streams(device, n):
    """n side streams per device, made once (creating streams every step costs host time)."""
    key = (str(device), n)
    if key not in _STREAMS:
        _STREAMS[key] = [torch.cuda.Stream(device=device) for _ in range(n)]
    return _STREAMS[key]


def _scores_and_pages(q, cache, layer, budget, batch, max_pages, method, lam, sink_pages,
                      pages_out=None, seqs=None):
    """Page scores, then the top-k physical pages."""
    from .triton.topk import topk_pages

    pt, lens = batch
    S = cache.page_size
    scores = page_scores(q, cache, layer, method, seqs, lam, sink_pages, batch, max_pages)
    return topk_pages(scores, lens, S, budget // S, page_table=pt, out=pages_out)


def sparse_step(q, cache, layer, budget, batch, max_pages, method="unique",
                lam=reference.LAMBDA, sink_pages=0, scale=None, streams=1, seqs=None):
    """Scores, top-k pages and sparse attention for a prepared batch (page_table, lengths):
    exactly the Triton work unique_decode does per step. No host synchronisation, so the call
    can be captured in a CUDA graph (the decode-step bench times it so). seqs: the rows' slots
    (a list, or a [B] long device tensor), which one-byte page means need for their centres (None:
    every active slot in slot order).

    streams > 1 (CUDA only): the batch is cut into that many row chunks, each run on its own
    side stream (forked from and joined back to the current stream by events), so one chunk's
    latency-bound top-k overlaps another's bandwidth-bound score/attention. Rows are
    independent, so the output is bitwise the same as streams=1 (tested). Returns (out, pages).
    """
    B = q.shape[0]
    pt, lens = batch
    n = min(int(streams), B) if q.is_cuda else 1
    if n <= 1:
        pages = _scores_and_pages(q, cache, layer, budget, batch, max_pages, method, lam,
                                  sink_pages, seqs=seqs)
        return attend(q, cache, layer, pages, None, scale, batch), pages
    out = torch.empty_like(q)
    pages = torch.empty(B, cache.num_kv_heads, budget // cache.page_size, dtype=torch.int32,
                        device=q.device)
    cur = torch.cuda.current_stream(q.device)
    bounds = [B * i // n for i in range(n + 1)]
    side = _side_streams(q.device, n)
    for i, st in enumerate(side):
        a, b = bounds[i], bounds[i + 1]
        st.wait_stream(cur)
        with torch.cuda.stream(st):
            chunk = (pt[a:b], lens[a:b])
            _scores_and_pages(q[a:b], cache, layer, budget, chunk, max_pages, method, lam,
                              sink_pages, pages_out=pages[a:b],
                              seqs=None if seqs is None else seqs[a:b])
            attend(q[a:b], cache, layer, pages[a:b], None, scale, chunk, out=out[a:b])
    for st in side:
        cur.wait_stream(st)
    return out, pages


def unique_decode(
    q: torch.Tensor,
    cache: PagedKVCache,
    layer: int,
    budget: int = 512,
    method: str = "unique",
    seqs: Sequence[int] | torch.Tensor | None = None,
    lam: float = reference.LAMBDA,
    sink_pages: int = 0,
    scale: float | None = None,
    impl: str = "auto",
    return_pages: bool = False,
    streams: int = 1,
    rows: StepRows | None = None,
):
    """One decoding step of one layer: scores, top-k pages, sparse attention (see module doc).

    With return_pages=True also returns the selected pages ([B, Hkv, k]; physical int32 ids
    from Triton, logical int64 indices from the reference; None when attending densely).
    streams: row chunks run on that many CUDA streams (sparse_step; same output).
    rows: the step's rows prepared on the device (StepRows; replaces seqs), for a step that
    reads no host state (CUDA graphs).
    """
    seqs = _seq_list(cache, rows.slots if rows is not None else seqs)
    check_inputs(q, cache, layer, seqs, budget, method)
    S = cache.page_size
    max_n = -(-max(cache.seq_length(s) for s in seqs) // S)
    if resolve_impl(q, impl) == "reference":
        out, sel = reference.decode_step(q, cache, layer, seqs, budget, method, sink_pages, lam,
                                         scale)
        out = out.to(q.dtype)
        return (out, sel) if return_pages else out
    if q.dtype == torch.float64:
        raise ValueError("unique_decode: float64 runs on impl='reference' only")
    if rows is None:
        batch, index, P = cache.batch(seqs), seqs, max_n
    else:
        batch, index = (rows.page_table, rows.lengths), rows.index
        P = max_n if rows.max_pages is None else rows.max_pages
    q_in = q
    q = q.to(cache.dtype).contiguous()
    if method == "dense" or max_n <= budget // S:
        out = attend(q, cache, layer, None, seqs, scale, batch).to(q_in.dtype)
        return (out, None) if return_pages else out
    out, pages = sparse_step(q, cache, layer, budget, batch, P, method, lam, sink_pages,
                             scale, streams, seqs=index)
    out = out.to(q_in.dtype)
    return (out, pages) if return_pages else out


def decode(q: torch.Tensor, cache: PagedKVCache, layer: int, cfg: SparseConfig,
           seqs: Sequence[int] | torch.Tensor | None = None,
           rows: StepRows | None = None) -> torch.Tensor:
    """unique_decode with the options of a SparseConfig (layers in cfg.dense_layers attend
    densely)."""
    method = "dense" if layer in cfg.dense_layers else cfg.method
    budget = max(cfg.budget, cache.page_size)  # dense attends to every page whatever the budget
    return unique_decode(q, cache, layer, budget, method, seqs, cfg.lam, cfg.sink_pages,
                         impl=cfg.impl, rows=rows)


def is_sparse_step(cache: PagedKVCache, cfg: SparseConfig, seqs: Sequence[int]) -> bool:
    """Whether a decode step over the slots `seqs` attends sparsely in some layer (the host's
    choice unique_decode makes: a method other than dense, and a row longer than the budget)."""
    if cfg.method == "dense" or not seqs:
        return False
    pages = -(-max(cache.seq_length(s) for s in seqs) // cache.page_size)
    return pages > max(cfg.budget, cache.page_size) // cache.page_size
