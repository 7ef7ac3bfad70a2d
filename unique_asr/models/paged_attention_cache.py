"""The decoder's KV cache protocol on the UNIQUE library, for the paged decode methods.

The speech LLM decodes through the cache protocol of models/attention.py (prefill / step /
advance / reorder / set_lens); PagedAttentionCache implements it on attention/paged_cache.
PagedKVCache + attention/api.decode, so `decode.sparse.method=unique decode.sparse.budget=128`
swaps dense decoding for top-k page-sparse decoding (docs/method.md):
- prefill: dense causal attention over the right-padded prompt ([audio][task], per-sequence
  lengths); the post-RoPE K/V of each sequence's real tokens go into the paged cache, which
  keeps the page statistics (sum, sum of squares, quest min/max) up to date.
- step: the new token's K/V are appended (one page-table slot per batch row), then the query
  attends through api.decode with the cache's SparseConfig (method, budget, sink_pages, lam,
  impl, dense_layers; impl auto = the Triton kernels on CUDA, reference.decode_step otherwise).
- reset(rows) + prefill(..., rows=): a row's pages return to the pool and the row takes a new
  prompt while the other rows keep theirs (continuous batching; attention.SlotRows).
- reorder(index): rows are sequence slots of the cache, so dropping rows frees slots, a
  permutation is a relabelling, a row used twice (beam search) gets its pages copied, and an
  index of -1 is a new empty row (continuous batching grows back into freed slots).
- pool_pages (decode.kv_pool_pages) caps the page pool below rows x pages_per_seq; the caller
  then admits a sequence only while the pool can hold it: pages_for(tokens) is a sequence's
  need, pool_pages the pool's size.
- step_view(batch, static): a decode step split for CUDA graphs (PagedStepView): the host takes
  the pages (PagedKVCache.plan_decode), the device does the rest (apply_decode, write, the
  kernels over api.StepRows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unique_asr.attention.api import SparseConfig, StepRows, decode, is_sparse_step
from unique_asr.attention.paged_cache import PagedKVCache


def _expand_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


class PagedAttentionCache:
    """The decoder's KV cache protocol on a PagedKVCache; decode steps use api.decode."""

    def __init__(self, n_layers, batch, max_len, n_kv_heads, head_dim, device, dtype,
                 sparse: SparseConfig, pool_pages: int | None = None):
        if pool_pages is not None and int(pool_pages) < 1:
            raise ValueError(f"decode.kv_pool_pages={pool_pages}: must be >= 1 (or null)")
        self.page_cap = None if pool_pages is None else int(pool_pages)
        self.sparse = sparse.validate()
        self.method, self.page_size = sparse.method, sparse.page_size
        self.n_layers, self.n_kv_heads, self.head_dim = n_layers, n_kv_heads, head_dim
        self.max_len = max_len
        self.pages_per_seq = -(-max_len // self.page_size)
        self.device, self.dtype = torch.empty(0, device=device).device, dtype
        self.kv = self._pool(batch)
        self.slots = [self.kv.add_sequence() for _ in range(batch)]
        self.lens = torch.zeros(batch, dtype=torch.long, device=self.device)
        self._prompt: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.storage_version = 0  # +1 whenever self.kv is replaced (_grow)

    def _pool(self, rows: int) -> PagedKVCache:
        pages = rows * self.pages_per_seq
        if self.page_cap is not None:
            pages = min(pages, self.page_cap)
        return PagedKVCache(self.n_layers, self.n_kv_heads, self.head_dim,
                            pages, rows, self.pages_per_seq,
                            self.page_size, self.dtype, self.device,
                            quest=self.method == "quest", stats_dtype=self.sparse.stats_dtype,
                            write_impl={"reference": "torch"}.get(self.sparse.impl,
                                                                  self.sparse.impl))

    def pages_for(self, tokens: int) -> int:
        """Pages a sequence of `tokens` tokens occupies."""
        return -(-int(tokens) // self.page_size)

    @property
    def pool_pages(self) -> int:
        """Pages of the whole pool (all rows together)."""
        return self.kv.num_pages

    # ---------------------------------------------------------------- prefill
    def prefill(self, layer: int, q, k, v, lens: torch.Tensor, rows=None) -> torch.Tensor:
        """Dense causal attention over the right-padded prompt (q [B,H,L,D], k/v [B,Hkv,L,D]);
        the real tokens (lens[b] per row) are paged into all rows (or `rows`, emptied first by
        reset) once every layer has been seen."""
        if k.shape[2] > self.max_len:
            raise ValueError(f"prompt of {k.shape[2]} tokens exceeds cache max_len="
                             f"{self.max_len}")
        targets = list(range(len(self.slots))) if rows is None else [int(r) for r in rows]
        if any(self.kv.seq_length(self.slots[r]) for r in targets):
            raise RuntimeError("PagedAttentionCache.prefill: a row already holds a prompt; "
                               "empty it first (reset) or build a new cache (model.new_cache)")
        g = q.shape[1] // k.shape[1]
        out = F.scaled_dot_product_attention(q, _expand_kv(k, g), _expand_kv(v, g),
                                             is_causal=True)
        self._prompt[layer] = (k, v)
        if len(self._prompt) == self.n_layers:
            self._write_prompt(lens, targets)
        return out

    def _write_prompt(self, lens: torch.Tensor, targets: list[int]) -> None:
        n = lens.tolist()
        for b, r in enumerate(targets):
            s = self.slots[r]
            self.kv.reserve([s], int(n[b]))
            for layer in range(self.n_layers):
                k, v = self._prompt[layer]
                self.kv.write(layer, k[b, :, : n[b]].transpose(0, 1),
                              v[b, :, : n[b]].transpose(0, 1))
        self._prompt.clear()
        self.lens = self.lens.clone()
        self.lens[targets] = lens.to(self.device, torch.long)

    def reset(self, rows: torch.Tensor) -> None:
        """Empty `rows`: their pages go back to the pool and each gets a fresh sequence slot."""
        self.lens = self.lens.clone()
        for r in [int(r) for r in rows]:
            self.kv.free_sequence(self.slots[r])
            self.slots[r] = self.kv.add_sequence()
            self.lens[r] = 0

    # ---------------------------------------------------------------- decode steps
    def step(self, layer: int, q, k, v) -> torch.Tensor:
        """Append one token per row (q [B,H,1,D], k/v [B,Hkv,1,D]) and attend sparsely."""
        if layer == 0:
            self.kv.reserve(self.slots, 1)
        self.kv.write(layer, k[:, :, 0], v[:, :, 0])
        return self.attend(q[:, :, 0], layer)[:, :, None].to(q.dtype)

    def attend(self, q: torch.Tensor, layer: int, rows: StepRows | None = None) -> torch.Tensor:
        """q [B, H, D] of the rows' newest tokens over the paged cache -> [B, H, D]; rows: the
        step's rows prepared on the device (PagedStepView)."""
        return decode(q, self.kv, layer, self.sparse, self.slots, rows)

    def step_view(self, batch: int, static: bool) -> PagedStepView:
        """This cache's decode step of `batch` rows split for CUDA graphs (PagedStepView)."""
        return PagedStepView(self, batch, static)

    def set_lens(self, lens: torch.Tensor, rows=None) -> None:
        lens = lens.to(self.device, torch.long)
        targets = list(range(len(self.slots))) if rows is None else [int(r) for r in rows]
        self.lens = self.lens.clone()
        self.lens[targets] = lens
        stored = [self.kv.seq_length(self.slots[r]) for r in targets]
        if stored != lens.tolist():
            raise RuntimeError(f"PagedAttentionCache.set_lens: lengths {lens.tolist()} "
                               f"differ from the paged prompt's {stored}")

    def advance(self, n: int = 1) -> None:
        self.lens = self.lens + n

    # ---------------------------------------------------------------- beam search / compaction
    def reorder(self, index: torch.Tensor) -> None:
        """Row i becomes old row index[i]: unused rows free their slots, the first use of a row
        keeps its slot, each further use gets a fresh slot holding a copy of its pages, and
        index[i] = -1 gets a fresh empty slot (length 0)."""
        idx = [int(i) for i in index.tolist()]
        if len(idx) > self.kv.max_seqs:
            self._grow(len(idx))
        used = set(idx)
        for r, s in enumerate(self.slots):
            if r not in used:
                self.kv.free_sequence(s)
        new, seen, copies = [], set(), []
        for i in idx:
            if i < 0:
                new.append(self.kv.add_sequence())
            elif i in seen:
                copies.append((self.slots[i], self.kv.add_sequence()))
                new.append(copies[-1][1])
            else:
                seen.add(i)
                new.append(self.slots[i])
        self._copy(self.kv, self.kv, copies)
        self.slots = new
        index = index.to(self.lens.device)
        self.lens = torch.where(index < 0, 0, self.lens.index_select(0, index.clamp_min(0)))

    def _grow(self, rows: int) -> None:
        """Move every row into a pool with room for `rows` sequences."""
        pool = self._pool(rows)
        slots = [pool.add_sequence() for _ in self.slots]
        self._copy(self.kv, pool, list(zip(self.slots, slots)))
        self.kv, self.slots = pool, slots
        self.storage_version += 1

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
        for name in src.page_stat_names:
            getattr(dst, name)[:, di] = getattr(src, name)[:, si]
        for s, d in pairs:
            dst.copy_center(src, s, d)


class PagedStepView:
    """A PagedAttentionCache decode step of `batch` rows split for CUDA graphs.

    prepare() is the host work: the pool's free list (PagedKVCache.plan_decode) and one small
    host-to-device copy of each row's slot and newly taken page (-1: none) into a buffer made
    once (asynchronous from pinned memory on CUDA), plus the positions from the cache's lengths.
    step() is the device work, reading only those buffers and the cache's own tensors: at layer
    0 apply_decode (page table, lengths, page counts) and the rows' page-table rows and lengths
    (api.StepRows); in every layer the K/V write and the attention. static: the kernels score
    a fixed number of pages per row: the longest row's pages rounded up to a power of two
    (at most max_pages_per_seq), so the top-k kernel's row block follows the rows in use, not
    the longest recording the cache was sized for; prepare's key holds that count (a new one
    is a new graph, at most log2 of them) and whether the step attends
    sparsely, a host choice (api.is_sparse_step) that a captured step bakes in.
    """

    def __init__(self, cache: PagedAttentionCache, batch: int, static: bool):
        self.cache, self.batch, self.static = cache, batch, static
        dev = cache.device
        self.positions = torch.zeros(batch, dtype=torch.long, device=dev)
        self._plan = torch.zeros(2, batch, dtype=torch.long, device=dev)  # slots; taken pages
        self._pin = dev.type == "cuda"
        impl = cache.sparse.impl
        # the reference implementation reads lengths on the host: it cannot be captured
        self.capturable = impl == "triton" or (impl == "auto" and dev.type == "cuda")
        self.rows: StepRows | None = None
        self.max_pages: int | None = None

    def prepare(self) -> tuple:
        """The step's host work; returns the key of its shapes: (attends sparsely, pages
        scored per row or None)."""
        c = self.cache
        if len(c.slots) != self.batch:
            raise ValueError(f"PagedStepView: the cache has {len(c.slots)} rows, the view "
                             f"{self.batch}; make a view per batch size")
        taken = c.kv.plan_decode(c.slots)
        plan = torch.tensor([c.slots, taken], dtype=torch.long, pin_memory=self._pin)
        self._plan.copy_(plan, non_blocking=self._pin)
        self.positions.copy_(c.lens)
        if self.static:
            longest = c.pages_for(max(c.kv.seq_length(s) for s in c.slots))
            self.max_pages = min(c.kv.max_pages_per_seq, 1 << max(4, (longest - 1).bit_length()))
        return (is_sparse_step(c.kv, c.sparse, c.slots), self.max_pages)

    def step(self, layer: int, q, k, v) -> torch.Tensor:
        kv = self.cache.kv
        if layer == 0:
            slots = self._plan[0]
            kv.apply_decode(slots, self._plan[1])
            self.rows = StepRows(list(self.cache.slots), slots,
                                 kv.page_table.index_select(0, slots),
                                 kv.lengths.index_select(0, slots),
                                 self.max_pages)
        kv.write(layer, k[:, :, 0], v[:, :, 0])
        return self.cache.attend(q[:, :, 0], layer, self.rows)[:, :, None].to(q.dtype)
