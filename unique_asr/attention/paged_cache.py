"""Paged KV cache with UNIQUE page statistics kept up to date as tokens arrive.

Why paged: decoding reads only the selected pages, so keys and values live in fixed-size pages
(S = 8 tokens by default) addressed through a page table per sequence; the per-page statistics
the selector needs (docs/method.md) are maintained incrementally from a running sum and sum of squares.

Layout (one tensor per kind, all layers stacked; N = physical pages, Hkv = KV heads):
  k, v        [layers, N, Hkv, S, D]   cache dtype ("HND" pages, FlashInfer's HND layout)
  ksum        [layers, N, Hkv, D]      float32 running sum of the keys of the page
  ksq         [layers, N, Hkv]         float32 running sum of ||k||^2
  mean        [layers, N, Hkv, D]      ksum / count (what the score kernel reads): in the cache
                                       dtype, or (stats_dtype="fp8" / "int8", one byte each) its
                                       offset from the sequence's centre in float8 e4m3 or int8,
                                       scaled per (page, head) so that the largest |value| is the
                                       format's largest (448 / 127)
  mean_scale  [layers, N, Hkv]         float32, only with 1-byte means: mean = value * scale
                                       + the sequence's centre
  center      [layers, max_seqs, Hkv, D] float32, only with 1-byte means: the mean of a
                                       sequence's first written keys (its prefill); the means
                                       hold their offsets from it, whose range is far smaller
                                       than the means' own (keys share large offsets)
  std         [layers, N, Hkv]         float32, sqrt(max(ksq/count - ||mean||^2, 0))
  kmin, kmax  [layers, N, Hkv, D]      cache dtype, only with quest=True
  page_table  [max_seqs, max_pages_per_seq] int32 physical page ids (-1 = none)
  lengths     [max_seqs] int32 tokens per sequence slot
Keys are stored as given: the caller passes post-RoPE keys (docs/method.md project choice).

Use from a decoder (one cache for all layers, the page table is shared by the layers):
    cache = PagedKVCache(num_layers, num_kv_heads, head_dim, num_pages, max_seqs, ...)
    s = cache.add_sequence()
    cache.reserve([s], 100)                 # prefill: 100 new tokens for sequence s
    for layer: cache.write(layer, k, v)     # k, v: [100, Hkv, D] (post-RoPE), then attend
    cache.reserve(seqs, 1)                  # each decode step: one token per sequence
    for layer: cache.write(layer, k, v)     # k, v: [len(seqs), Hkv, D]; then api.unique_decode
    cache.free_sequence(s)
A decode step can also be split in two for CUDA graphs: plan_decode(seqs) is its host half (the
pool's free list), apply_decode(slots, taken) its device half (page table, lengths, counts), after
which write() and the kernels read only device tensors of fixed shapes.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

# bf16: page means in the cache's dtype; fp8 / int8: one byte per value (e4m3, or a symmetric
# integer) + a float32 scale per (page, head)
STATS_DTYPES = ("bf16", "fp8", "int8")
QUANT = {"fp8": (torch.float8_e4m3fn, 448.0), "int8": (torch.int8, 127.0)}  # dtype, largest


def quantize_means(x: torch.Tensor, stats_dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., D] -> (one-byte values [..., D], float32 scale [...]) with x ~= values * scale:
    one scale per row, mapping the row's largest |x| to the format's largest value. int8 rounds
    to a uniform grid: for the near-Gaussian offsets of page means its error is several times
    smaller than e4m3's 3-bit mantissa (bench/NOTES.md, top-k agreement)."""
    dtype, top = QUANT[stats_dtype]
    xf = x.float()
    scale = xf.abs().amax(-1).clamp_min(1e-30) / top
    y = xf / scale[..., None]
    if dtype == torch.int8:
        y = y.round().clamp(-top, top)
    return y.to(dtype), scale


class PagedKVCache:
    """Page pool + page tables + page statistics for `num_layers` attention layers."""

    def __init__(
        self,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        num_pages: int,
        max_seqs: int,
        max_pages_per_seq: int | None = None,
        page_size: int = 8,
        dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device = "cpu",
        quest: bool = False,
        stats_dtype: str = "bf16",
        write_impl: str = "auto",
    ) -> None:
        if page_size < 1 or num_pages < 1 or max_seqs < 1:
            raise ValueError("PagedKVCache: page_size, num_pages and max_seqs must be >= 1")
        if stats_dtype not in STATS_DTYPES:
            raise ValueError(f"PagedKVCache: stats_dtype must be one of {STATS_DTYPES}, got "
                             f"{stats_dtype!r}")
        self.num_layers, self.num_kv_heads, self.head_dim = num_layers, num_kv_heads, head_dim
        self.num_pages, self.max_seqs, self.page_size = num_pages, max_seqs, page_size
        self.max_pages_per_seq = max_pages_per_seq or num_pages
        self.dtype, self.quest = dtype, quest
        self.device = torch.empty(0, device=device).device  # 'cuda' -> 'cuda:0', as tensors report
        if write_impl not in ("auto", "triton", "torch"):
            raise ValueError(f"PagedKVCache: write_impl must be auto, triton or torch, got "
                             f"{write_impl!r}")
        # a decode step's write in one Triton launch per layer (triton/cache_write.py; auto: on
        # CUDA); fp8 means keep the PyTorch path (the kernel's e4m3 rounding is not yet checked
        # on a GPU: Triton's CPU interpreter rounds some values up across a power of two wrongly)
        self.fused_write = stats_dtype in ("bf16", "int8") and (
            write_impl == "triton" or (write_impl == "auto" and self.device.type == "cuda"))
        L, N, H, S, D = num_layers, num_pages, num_kv_heads, page_size, head_dim
        dev = self.device
        self.k = torch.zeros(L, N, H, S, D, dtype=dtype, device=dev)
        self.v = torch.zeros(L, N, H, S, D, dtype=dtype, device=dev)
        self.ksum = torch.zeros(L, N, H, D, dtype=torch.float32, device=dev)
        self.ksq = torch.zeros(L, N, H, dtype=torch.float32, device=dev)
        scaled = stats_dtype != "bf16"
        self._stats = stats_dtype
        self.mean = torch.zeros(L, N, H, D, dtype=QUANT[stats_dtype][0] if scaled else dtype,
                                device=dev)
        self.mean_scale = torch.zeros(L, N, H, dtype=torch.float32, device=dev) if scaled else None
        self.center = (torch.zeros(L, max_seqs, H, D, dtype=torch.float32, device=dev) if scaled
                       else None)
        # owner slot of each page (1-byte means only: which centre its mean is relative to)
        self.page_seq = torch.zeros(N, dtype=torch.long, device=dev) if scaled else None
        self.std = torch.zeros(L, N, H, dtype=torch.float32, device=dev)
        if quest:
            self.kmin = torch.full((L, N, H, D), float("inf"), dtype=dtype, device=dev)
            self.kmax = torch.full((L, N, H, D), float("-inf"), dtype=dtype, device=dev)
        self.page_table = torch.full(
            (max_seqs, self.max_pages_per_seq), -1, dtype=torch.int32, device=dev
        )
        self.lengths = torch.zeros(max_seqs, dtype=torch.int32, device=dev)
        self.page_count = torch.zeros(N, dtype=torch.int32, device=dev)  # tokens in each page
        # host-side bookkeeping (allocation is a host decision)
        self._free = list(range(N - 1, -1, -1))
        self._pages: list[list[int] | None] = [None] * max_seqs
        self._len = [0] * max_seqs
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self._first: list[int] = []  # slots whose first tokens the last reserve() made room for
        self._pending_seq: torch.Tensor | None = None  # their tokens' slots (centres)
        self._distinct = False  # the last reserve() put each token on a page of its own
        # apply_decode(): which pending tokens start a page (write() starts its sums from them)
        self._fresh: torch.Tensor | None = None
        self._rows: tuple[tuple[int, ...], torch.Tensor] | None = None  # last slots -> index

    # ---------------------------------------------------------------- sequences and pages
    def add_sequence(self) -> int:
        """Take a free sequence slot; returns its index (used as the batch row)."""
        for s, pages in enumerate(self._pages):
            if pages is None:
                self._pages[s] = []
                self._len[s] = 0
                self.lengths[s] = 0
                return s
        raise RuntimeError(f"PagedKVCache: all {self.max_seqs} sequence slots are in use; "
                           "free one (free_sequence) or build the cache with more max_seqs")

    def free_sequence(self, seq: int) -> None:
        """Return a sequence's pages to the pool and its slot to the free list."""
        pages = self._check_seq(seq)
        self._free.extend(reversed(pages))
        self._pages[seq] = None
        self._len[seq] = 0
        self.lengths[seq] = 0
        self.page_table[seq].fill_(-1)

    def active_sequences(self) -> list[int]:
        return [s for s, p in enumerate(self._pages) if p is not None]

    def seq_length(self, seq: int) -> int:
        return self._len[seq]

    @property
    def free_pages(self) -> int:
        return len(self._free)

    def _check_seq(self, seq: int) -> list[int]:
        if not 0 <= seq < self.max_seqs or self._pages[seq] is None:
            raise ValueError(f"PagedKVCache: sequence {seq} is not allocated (add_sequence)")
        return self._pages[seq]  # type: ignore[return-value]

    def _alloc_pages(self, n: int, clear: bool = True) -> list[int]:
        """Take n pages from the pool; clear: zero their statistics on the device (apply_decode
        does not need it: write() restarts a fresh page's sums)."""
        if n > len(self._free):
            raise RuntimeError(f"PagedKVCache: out of pages (need {n}, {len(self._free)} free of "
                               f"{self.num_pages}); build the cache with more num_pages")
        got = [self._free.pop() for _ in range(n)]
        if not clear:
            return got
        idx = torch.tensor(got, device=self.device, dtype=torch.long)
        self.ksum[:, idx] = 0
        self.ksq[:, idx] = 0
        self.mean[:, idx] = 0
        if self.mean_scale is not None:
            self.mean_scale[:, idx] = 0
        self.std[:, idx] = 0
        self.page_count[idx] = 0
        if self.quest:
            self.kmin[:, idx] = float("inf")
            self.kmax[:, idx] = float("-inf")
        return got

    # ---------------------------------------------------------------- appending tokens
    def reserve(self, seqs: Sequence[int], n: int) -> None:
        """Make room for n new tokens at the end of each sequence in `seqs` (prefill: n > 1,
        decode: n = 1) and advance their lengths. The next write() per layer fills them."""
        if n < 1:
            raise ValueError(f"PagedKVCache.reserve: n must be >= 1, got {n}")
        S = self.page_size
        page_ids, offsets, owners = [], [], []  # owners: centres of first writes only
        new_rows = []
        self._first = [s for s in seqs if self._len[s] == 0]
        # one new token per distinct sequence (a decode step): every token is on its own page,
        # so write() needs no torch.unique (a device sync) to find the pages it touched
        self._distinct = n == 1 and len(set(seqs)) == len(seqs)
        self._fresh = None
        for s in seqs:
            pages = self._check_seq(s)
            start, end = self._len[s], self._len[s] + n
            first = len(pages)
            if self._extend(s, end):
                new_rows.append((s, first, pages[first:]))
            pos = range(start, end)
            page_ids.extend(pages[p // S] for p in pos)
            offsets.extend(p % S for p in pos)
            if self.center is not None and self._first:
                owners.extend([s] * n)
        for s, first, new in new_rows:
            ids = torch.tensor(new, dtype=torch.long, device=self.device)
            self.page_table[s, first:first + len(new)] = ids.to(torch.int32)
            if self.page_seq is not None:
                self.page_seq[ids] = s
        idx = torch.tensor(list(seqs), dtype=torch.long, device=self.device)
        self.lengths[idx] = torch.tensor([self._len[s] for s in seqs], dtype=torch.int32,
                                         device=self.device)
        pid = torch.tensor(page_ids, dtype=torch.long, device=self.device)
        off = torch.tensor(offsets, dtype=torch.long, device=self.device)
        self.page_count.index_add_(0, pid, torch.ones_like(pid, dtype=torch.int32))
        self._pending = (pid, off)
        if owners:
            self._pending_seq = torch.tensor(owners, dtype=torch.long, device=self.device)

    def _extend(self, s: int, end: int, clear: bool = True) -> list[int]:
        """Host side of growing sequence s to `end` tokens: the pages it takes (appended to its
        list); the caller writes them into the page table."""
        pages = self._check_seq(s)
        n_pages = -(-end // self.page_size)
        if n_pages > self.max_pages_per_seq:
            raise RuntimeError(f"PagedKVCache: sequence {s} would need {n_pages} pages "
                               f"> max_pages_per_seq {self.max_pages_per_seq}")
        new = self._alloc_pages(n_pages - len(pages), clear) if n_pages > len(pages) else []
        pages.extend(new)
        self._len[s] = end
        return new

    def plan_decode(self, seqs: Sequence[int]) -> list[int]:
        """Host half of reserve(seqs, 1) for a decode step whose device half is fixed in advance
        (apply_decode; CUDA graphs): counts one more token per sequence and takes a page from
        the pool for each whose new token starts one. Returns that page per sequence (-1:
        none). No device work: the pages' statistics are restarted by write()."""
        if len(set(seqs)) != len(seqs):
            raise ValueError("PagedKVCache.plan_decode: a sequence appears twice; reserve(seqs, "
                             "1) handles repeated sequences")
        if self.center is not None and any(self._len[s] == 0 for s in seqs):
            raise ValueError("PagedKVCache.plan_decode: one-byte page means need each sequence's "
                             "first tokens through reserve() (its centre); prefill it first")
        taken = []
        for s in seqs:
            new = self._extend(s, self._len[s] + 1, clear=False)
            taken.append(new[0] if new else -1)
        return taken

    def apply_decode(self, slots: torch.Tensor, taken: torch.Tensor) -> None:
        """Device half of plan_decode: slots [B] long, taken [B] long (plan_decode's pages, -1:
        none) on the cache's device. Puts the taken pages into the page table, counts the new
        tokens in the lengths and page counts, and sets up write() for them (one per row, each
        on a page of its own). Reads no host value and makes tensors of fixed shapes only, so a
        CUDA graph can replay it; the cache ends as reserve(slots, 1) leaves it."""
        S = self.page_size
        pos = self.lengths.index_select(0, slots).long()  # tokens before this one
        lp, off = pos // S, pos % S
        pid32 = torch.where(taken >= 0, taken.to(torch.int32), self.page_table[slots, lp])
        self.page_table[slots, lp] = pid32
        self.lengths[slots] = (pos + 1).to(torch.int32)
        pid = pid32.long()
        fresh = off == 0  # the token starts its page (the one plan_decode took)
        self.page_count[pid] = torch.where(fresh, 0, self.page_count[pid]) + 1
        if self.page_seq is not None:
            self.page_seq[pid] = slots
        self._pending, self._fresh = (pid, off), fresh
        self._first, self._distinct = [], True

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store the reserved tokens' keys/values of one layer and update the page statistics.

        k, v: [T, Hkv, D] with T = tokens reserved by the last reserve() (sequence order, then
        time order) or apply_decode() (one per row), post-RoPE keys.
        """
        if self._pending is None:
            raise RuntimeError("PagedKVCache.write: call reserve(seqs, n) before write()")
        pid, off = self._pending
        T, H, D = pid.numel(), self.num_kv_heads, self.head_dim
        for name, x in (("k", k), ("v", v)):
            if tuple(x.shape) != (T, H, D):
                raise ValueError(f"PagedKVCache.write: {name} has shape {tuple(x.shape)}, "
                                 f"expected {(T, H, D)} (reserved tokens, KV heads, head dim)")
        if not 0 <= layer < self.num_layers:
            raise ValueError(f"PagedKVCache.write: layer {layer} not in [0, {self.num_layers})")
        if self._fresh is not None and self.fused_write:
            from .triton.cache_write import decode_write

            decode_write(self, layer, k, v, pid, off, self._fresh)
            return
        self.k[layer][pid, :, off] = k.to(self.dtype)
        self.v[layer][pid, :, off] = v.to(self.dtype)
        kf = k.float()
        fresh = self._fresh
        if fresh is None:
            self.ksum[layer].index_put_((pid,), kf, accumulate=True)
            self.ksq[layer].index_put_((pid,), (kf * kf).sum(-1), accumulate=True)
        else:  # apply_decode: one token per page; a fresh page's sums start from it
            f3 = fresh[:, None, None]
            self.ksum[layer][pid] = torch.where(f3, 0.0, self.ksum[layer][pid]) + kf
            self.ksq[layer][pid] = (torch.where(fresh[:, None], 0.0, self.ksq[layer][pid])
                                    + (kf * kf).sum(-1))
        if self.quest:
            kc = k.to(self.dtype)
            if fresh is None:
                with warnings.catch_warnings():  # index_reduce_ is "beta" but exact for amin/amax
                    warnings.simplefilter("ignore", UserWarning)
                    self.kmin[layer].index_reduce_(0, pid, kc, "amin", include_self=True)
                    self.kmax[layer].index_reduce_(0, pid, kc, "amax", include_self=True)
            else:
                f3 = fresh[:, None, None]
                self.kmin[layer][pid] = torch.where(f3, kc, torch.minimum(self.kmin[layer][pid], kc))
                self.kmax[layer][pid] = torch.where(f3, kc, torch.maximum(self.kmax[layer][pid], kc))
        touched = pid if self._distinct else torch.unique(pid)
        cnt = self.page_count[touched].float().clamp_min(1)
        mean = self.ksum[layer, touched] / cnt[:, None, None]
        var = self.ksq[layer, touched] / cnt[:, None] - (mean * mean).sum(-1)
        if self.mean_scale is None:
            self.mean[layer, touched] = mean.to(self.dtype)
        else:
            if self._first:
                self._set_centers(layer, kf)
            q, scale = quantize_means(mean - self.center[layer, self.page_seq[touched]],
                                      self._stats)
            self.mean[layer, touched] = q
            self.mean_scale[layer, touched] = scale
        self.std[layer, touched] = var.clamp_min(0).sqrt()

    def _set_centers(self, layer: int, kf: torch.Tensor) -> None:
        """Centres of the sequences written for the first time: the mean of their keys here."""
        sid = self._pending_seq
        first = torch.tensor(self._first, dtype=torch.long, device=self.device)
        tot = torch.zeros(self.max_seqs, self.num_kv_heads, self.head_dim, device=self.device)
        tot.index_add_(0, sid, kf)
        cnt = torch.bincount(sid, minlength=self.max_seqs)[first].clamp_min(1).float()
        self.center[layer, first] = tot[first] / cnt[:, None, None]

    def page_means(self, layer: int) -> torch.Tensor:
        """The page means of one layer [N, Hkv, D] as the score kernel sees them (one-byte means
        dequantized to float32, their sequence's centre added; otherwise the stored tensor)."""
        if self.mean_scale is None:
            return self.mean[layer]
        deq = self.mean[layer].float() * self.mean_scale[layer][..., None]
        return deq + self.center[layer, self.page_seq]

    def row_centers(self, layer: int, seqs: Sequence[int]) -> torch.Tensor | None:
        """The centres [len(seqs), Hkv, D] float32 of one-byte means for the given slots (None:
        bf16 means)."""
        if self.center is None:
            return None
        return self.center[layer, self._index(seqs)]

    def _index(self, seqs) -> torch.Tensor:
        """The slots as a long tensor on the cache's device, made once per distinct list (a
        decode step asks for the same slots in every layer); a long tensor already on the
        device is used as it is (no host read: a prepared step's slots, api.StepRows)."""
        if torch.is_tensor(seqs) and seqs.dtype == torch.long and seqs.device == self.device:
            return seqs
        key = tuple(int(s) for s in (seqs.tolist() if torch.is_tensor(seqs) else seqs))
        if self._rows is None or self._rows[0] != key:
            self._rows = (key, torch.tensor(key, dtype=torch.long, device=self.device))
        return self._rows[1]

    @property
    def page_stat_names(self) -> list[str]:
        """The per-page tensors ([layers, N, ...]) a copy of a page must carry."""
        return (["k", "v", "ksum", "ksq", "mean", "std"]
                + (["mean_scale"] if self.mean_scale is not None else [])
                + (["kmin", "kmax"] if self.quest else []))

    def copy_center(self, src: PagedKVCache, src_seq: int, dst_seq: int) -> None:
        """Give slot dst_seq the centre of src's slot src_seq (its pages' means are stored
        relative to it)."""
        if self.center is not None:
            self.center[:, dst_seq] = src.center[:, src_seq]

    # ---------------------------------------------------------------- views for kernels/tests
    def batch(self, seqs: Sequence[int] | torch.Tensor | None = None):
        """(page_table [B, max_pages] int32, lengths [B] int32) for the given sequence slots
        (default: all active ones, in slot order) on the cache's device."""
        if seqs is None:
            seqs = self.active_sequences()
        idx = self._index(seqs)
        return self.page_table.index_select(0, idx), self.lengths.index_select(0, idx)

    def contiguous(self, layer: int, seqs: Sequence[int] | None = None):
        """Keys and values of the given sequences as contiguous [B, Hkv, Lmax, D] tensors plus
        lengths [B] (zeros past each length); for references and tests."""
        pt, lens = self.batch(seqs)
        B = pt.shape[0]
        Lmax = int(lens.max().item()) if B else 0
        P = -(-Lmax // self.page_size)
        pages = pt[:, :P].long().clamp_min(0)
        k = self.k[layer][pages]  # [B, P, Hkv, S, D]
        v = self.v[layer][pages]
        k = k.permute(0, 2, 1, 3, 4).reshape(B, self.num_kv_heads, P * self.page_size, -1)
        v = v.permute(0, 2, 1, 3, 4).reshape(B, self.num_kv_heads, P * self.page_size, -1)
        pos = torch.arange(P * self.page_size, device=self.device)
        keep = (pos[None, :] < lens.long()[:, None])[:, None, :, None]
        return (k * keep)[:, :, :Lmax], (v * keep)[:, :, :Lmax], lens
