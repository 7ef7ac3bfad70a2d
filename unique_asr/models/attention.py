"""The decoder's one attention interface: training attention and the decoding KV caches.

- TrainAttentionConfig (`train.attention.*`) picks how the decoder attends in training (and
  in any dense-shaped pass): TRAIN_ATTENTION[cfg.kind](q, k, v, cfg) -> out, with q [B,H,L,D],
  k/v [B,Hkv,L,D] (post-RoPE), causal; sequences are packed to the left so causal masking
  alone keeps padding out of every real query's view.
- new_decode_cache(..., sparse) -> a KV cache for decoding, one per method of the attention
  library's METHODS (attention/api.py): dense is DenseKVCache (contiguous, torch SDPA), the
  sparse methods PagedAttentionCache (paged_attention_cache.py). A cache's protocol:
  `prefill(layer, q, k, v, lens)` stores the prompt and returns its attention output,
  `step(layer, q, k, v)` appends one token per sequence and attends, `advance(n)` moves the
  lengths once all layers are done, `set_lens(lens)`, `reorder(index)` (beam search,
  batch compaction). prefill and set_lens take `rows=` to fill only some rows; `SlotRows(
  cache, rows)` empties those rows and gives the model a cache-shaped view that prefills them
  (continuous batching: a finished sequence's row takes the next recording).
- `step_view(batch, static)` -> a decode step split for CUDA graphs (decoding/cuda_graph.py):
  its `prepare()` is the step's host work (checks, page allocation; results copied into
  buffers made once), after which the model runs through the view (`view.step(layer, q, k, v)`,
  `view.positions`) reading only device tensors, with no host synchronisation; static=True also
  fixes the shapes, and prepare() returns a key that changes whenever they must change.
  `storage_version` counts the times the cache replaced a tensor such a step reads (a step
  captured before then is stale).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unique_asr.attention.api import SparseConfig


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


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    cfg: TrainAttentionConfig | None = None) -> torch.Tensor:
    """Causal GQA attention with torch SDPA (enable_gqa: K/V are never copied per query head)."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                          enable_gqa=q.shape[1] != k.shape[1])


def _softmask(q, k, v, cfg: TrainAttentionConfig, mode: str):
    """UNIQUE sparsity-aware training attention (docs/method.md soft page mask)."""
    from unique_asr.attention.softmask import softmask_attention

    return softmask_attention(q, k, v, page_size=cfg.page_size, budget=cfg.budget, tau=cfg.tau,
                              mode=mode, lam=cfg.lam)


TRAIN_ATTENTION: dict[str, Callable] = {
    "dense": dense_attention,
    "unique_soft": lambda q, k, v, cfg: _softmask(q, k, v, cfg, "soft"),
    "unique_hard": lambda q, k, v, cfg: _softmask(q, k, v, cfg, "hard"),
}


class DenseKVCache:
    """Contiguous per-layer K/V storage [B, Hkv, max_len, D] with per-sequence lengths.

    The host keeps the longest and shortest lengths (`top`, `low`: read once per set_lens, reset
    and reorder, +n per advance), so a step reads no device value: it attends over the first
    top + 1 positions, masking each row past its own length, and without a mask when every row
    has the same length (SDPA's mask-free kernels are the fast ones)."""

    # a static step (step_view) attends over top + 1 rounded up to a multiple of this, so a
    # captured step serves this many tokens of growth
    STATIC_SPAN = 1024

    def __init__(self, n_layers, batch, max_len, n_kv_heads, head_dim, device, dtype):
        shape = (batch, n_kv_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.lens = torch.zeros(batch, dtype=torch.long, device=device)
        self.max_len = max_len
        self.top = self.low = 0
        self.storage_version = 0  # +1 whenever self.k / self.v are replaced (reorder)

    def _bounds(self) -> None:
        """top / low from the lengths (one device read; not in steps)."""
        has = self.lens.numel() > 0
        self.top = int(self.lens.max()) if has else 0
        self.low = int(self.lens.min()) if has else 0

    def prefill(self, layer: int, q, k, v, lens: torch.Tensor, rows=None) -> torch.Tensor:
        """Store the right-padded prompt K/V (length L) in all rows (or `rows`, one per prompt)
        and return causal attention output."""
        L = k.shape[2]
        if L > self.max_len:
            raise ValueError(f"prompt of {L} tokens exceeds cache max_len={self.max_len}")
        at = slice(None) if rows is None else rows
        self.k[layer][at, :, :L] = k.to(self.k[layer].dtype)
        self.v[layer][at, :, :L] = v.to(self.v[layer].dtype)
        return dense_attention(q, k, v)

    def _check_room(self) -> None:
        if self.top >= self.max_len:
            raise ValueError(f"KV cache full (max_len={self.max_len}); allocate a larger cache")

    def step(self, layer: int, q, k, v) -> torch.Tensor:
        """Append one token per sequence (q/k/v [B,*,1,D]) at position lens[b] and attend."""
        self._check_room()
        return self.append_attend(layer, q, k, v, self.lens, self.top + 1, self.low != self.top)

    def append_attend(self, layer: int, q, k, v, pos: torch.Tensor, n: int,
                      masked: bool) -> torch.Tensor:
        """step's device work: the token of row b goes to position pos[b]; attention over the
        first n positions, each row masked past its own position when `masked`."""
        b = torch.arange(k.shape[0], device=k.device)
        self.k[layer][b, :, pos] = k[:, :, 0].to(self.k[layer].dtype)
        self.v[layer][b, :, pos] = v[:, :, 0].to(self.v[layer].dtype)
        kk, vv = self.k[layer][:, :, :n], self.v[layer][:, :, :n]
        mask = None
        if masked:
            mask = (torch.arange(n, device=k.device)[None, :] <= pos[:, None])[:, None, None]
        return F.scaled_dot_product_attention(
            q, kk.to(q.dtype), vv.to(q.dtype), attn_mask=mask,
            enable_gqa=q.shape[1] != kk.shape[1],
        )

    def step_view(self, batch: int, static: bool) -> DenseStepView:
        """This cache's decode step of `batch` rows split for CUDA graphs (DenseStepView)."""
        return DenseStepView(self, batch, static)

    def set_lens(self, lens: torch.Tensor, rows=None) -> None:
        lens = lens.to(self.lens.device, torch.long)
        if rows is None:
            self.lens = lens.clone()
        else:
            self.lens = self.lens.clone()
            self.lens[rows] = lens
        self._bounds()

    def reset(self, rows: torch.Tensor) -> None:
        """Empty `rows` (lengths 0); their stale K/V lie past the length, where steps mask."""
        self.lens = self.lens.clone()
        self.lens[rows] = 0
        self._bounds()

    def advance(self, n: int = 1) -> None:
        self.lens = self.lens + n
        self.top += n
        self.low += n

    def reorder(self, index: torch.Tensor) -> None:
        """Beam search: row i of the cache becomes old row index[i]. When the row count stays,
        only the rows that change are rewritten, up to the longest filled length, in place (a
        beam step moves a few hypotheses; copying every row's whole max_len was most of a CPU
        beam step); otherwise (compaction) new storage is allocated."""
        if index.numel() == self.lens.numel() and self.lens.numel() > 0:
            moved = (index != torch.arange(index.numel(), device=index.device)).nonzero()[:, 0]
            if moved.numel():
                src, n = index[moved], self.top
                for t in self.k + self.v:
                    t[moved, :, :n] = t[src, :, :n]  # the right side is gathered first
                self.lens = self.lens.index_select(0, index)
                self._bounds()
            return
        self.k = [t.index_select(0, index) for t in self.k]
        self.v = [t.index_select(0, index) for t in self.v]
        self.lens = self.lens.index_select(0, index)
        self.storage_version += 1
        self._bounds()


class DenseStepView:
    """A DenseKVCache decode step of `batch` rows split for CUDA graphs. prepare() (host) checks
    for room, picks the attended span and copies the lengths into a buffer made once; step()
    then writes K/V at those positions and attends with a length mask, reading no host value.
    static: the span is top + 1 rounded up to DenseKVCache.STATIC_SPAN (at most max_len), so
    the shapes hold for many steps (prepare's key says when they change); otherwise it is
    top + 1, masked only when the rows differ in length: exactly DenseKVCache.step."""

    def __init__(self, cache: DenseKVCache, batch: int, static: bool):
        self.cache, self.batch, self.static = cache, batch, static
        self.positions = torch.zeros(batch, dtype=torch.long, device=cache.lens.device)
        self.capturable = True
        self._span = (1, False)

    def prepare(self) -> tuple:
        """The step's host work; returns the key of its shapes: (span, masked)."""
        c = self.cache
        if c.lens.shape[0] != self.batch:
            raise ValueError(f"DenseStepView: the cache has {c.lens.shape[0]} rows, the view "
                             f"{self.batch}; make a view per batch size")
        c._check_room()
        n = c.top + 1
        if self.static:
            n = min(c.max_len, -(-n // c.STATIC_SPAN) * c.STATIC_SPAN)
        self._span = (n, c.low != c.top or n != c.top + 1)
        self.positions.copy_(c.lens)
        return self._span

    def step(self, layer: int, q, k, v) -> torch.Tensor:
        return self.cache.append_attend(layer, q, k, v, self.positions, *self._span)


class SlotRows:
    """Some rows of a decode cache, emptied, seen by the model's prefill as a whole cache: the
    model code stays the same for a batch prefill and for refilling freed slots."""

    def __init__(self, cache, rows: torch.Tensor):
        self.cache = cache
        self.rows = torch.as_tensor(rows, dtype=torch.long, device=cache.lens.device)
        cache.reset(self.rows)

    @property
    def lens(self) -> torch.Tensor:
        return self.cache.lens[self.rows]

    def prefill(self, layer: int, q, k, v, lens: torch.Tensor) -> torch.Tensor:
        return self.cache.prefill(layer, q, k, v, lens, rows=self.rows)

    def set_lens(self, lens: torch.Tensor) -> None:
        self.cache.set_lens(lens, rows=self.rows)


def new_decode_cache(n_layers: int, batch: int, max_len: int, n_kv_heads: int, head_dim: int,
                     device, dtype, sparse: SparseConfig | None = None,
                     pool_pages: int | None = None):
    """The KV cache of `sparse.method` (default: dense) for `batch` sequences of `max_len`;
    pool_pages caps a paged cache's pool (the dense cache has none)."""
    from unique_asr.models.paged_attention_cache import PagedAttentionCache

    sparse = (sparse or SparseConfig()).validate()  # method is one of METHODS
    if sparse.method == "dense":
        if pool_pages is not None:
            raise ValueError(f"decode.kv_pool_pages={pool_pages}: the dense KV cache has no page "
                             "pool; use a paged decode.sparse.method (unique, quest, meanonly, "
                             "oracle) or leave decode.kv_pool_pages null")
        return DenseKVCache(n_layers, batch, max_len, n_kv_heads, head_dim, device, dtype)
    return PagedAttentionCache(n_layers, batch, max_len, n_kv_heads, head_dim, device, dtype,
                               sparse, pool_pages)
