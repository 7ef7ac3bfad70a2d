"""Continuous batching (decode.engine=continuous): recordings stream through a fixed number of
KV-cache slots instead of decoding in fixed batches.

Why: in a fixed batch a short recording's row idles (or is compacted away) while the longest
one finishes, so the batch shrinks and the GPU runs ever smaller steps. Here, when a sequence
ends (end token or its length cap) its row is emptied (a paged cache returns its pages to the
pool) and the next queued recording is prefilled into it, while the other rows keep decoding.
The decode step keeps `slots` rows as long as the queue has work (the static shape a captured
step needs); once the queue is empty finished rows are dropped as greedy_search drops them.

Same model contract as generate.py, plus the cache's `reset(rows)` and row-wise prefill
(models/attention.SlotRows). A row that has just ended still takes part in that step's
decode_step (its token is thrown away with the row), so the step's shape does not change.
Each recording's tokens are those greedy_search gives it alone: rows never see each other.

Page budget (pool_pages, decode.kv_pool_pages; paged caches only): the pool holds pool_pages
pages instead of slots x the longest recording's pages. A queued recording takes a free row only
when the pages not promised to the running rows hold its whole run (prompt, token limit, the
thrown-away step); otherwise it and those behind it wait (no overtaking, so the rows' contents
and the transcripts do not depend on timing). Rows left empty leave the step (compaction) and
come back as empty cache rows (cache.reorder with -1) once finished rows have returned pages.
"""

from __future__ import annotations

import logging
import time
from collections import deque

import torch

from unique_asr.attention.api import SparseConfig
from unique_asr.decoding.cuda_graph import decode_stepper
from unique_asr.decoding.generate import GenStats, JointCTC, _as_limits, greedy_pick, sync
from unique_asr.models.attention import SlotRows

log = logging.getLogger(__name__)


class _Slots:
    """Which queued recording each cache row holds, which queued ones may enter now, and the
    prefill that admits them."""

    def __init__(self, model, audio_emb, audio_lens, queue: deque, stats: GenStats,
                 pages: list[int] | None = None, pool: int | None = None):
        self.model, self.emb, self.lens = model, audio_emb, audio_lens
        self.queue, self.stats = queue, stats
        self.seq: list[int] = []  # the recording of each row
        self.pages, self.pool = pages, pool  # pages of each recording's run; pool size (budget)
        self.waited: set[int] = set()  # recordings that found a free row but too few pages

    def admissible(self, free_rows: int, busy: list[int]) -> int:
        """How many recordings at the head of the queue enter now: one per free row, and with a
        page budget only while the pages not promised to the `busy` rows hold their runs."""
        k = min(free_rows, len(self.queue))
        if self.pool is None:
            return k
        left = self.pool - sum(self.pages[self.seq[r]] for r in busy)
        for i in range(k):
            s = self.queue[i]
            if self.pages[s] > left:
                self.waited.add(s)
                return i
            left -= self.pages[s]
        return k

    def admit(self, cache, rows: list[int]) -> torch.Tensor:
        """Prefill the next len(rows) queued recordings into `rows`; their logits [n, V]."""
        t0 = time.perf_counter()
        items = [self.queue.popleft() for _ in rows]
        idx = torch.tensor(items, device=self.emb.device)
        lens = self.lens[idx]
        emb = self.emb[idx, : int(lens.max())]
        logits = self.model.prefill(emb, lens, SlotRows(cache, torch.tensor(rows)))
        for r, s in zip(rows, items):
            if r < len(self.seq):
                self.seq[r] = s
            else:
                self.seq.append(s)
        sync(self.emb.device)
        self.stats.prefill_seconds += time.perf_counter() - t0
        return logits


@torch.inference_mode()
def continuous_greedy(
    model,
    audio_emb: torch.Tensor,
    audio_lens: torch.Tensor,
    max_new,
    slots: int,
    sparse: SparseConfig | None = None,
    ctc: JointCTC | None = None,
    pool_pages: int | None = None,
    cuda_graphs: bool = False,
) -> tuple[list[list[int]], GenStats]:
    """Greedy decoding of the recordings of audio_emb [B, Ta, D] (a queue, in order) through
    `slots` cache rows, sharing a pool of `pool_pages` pages if given (module doc). Returns the
    token ids per recording (end token stripped), as greedy_search does. cuda_graphs: decode
    steps replayed from CUDA graphs, one per row count (decoding/cuda_graph.py; CUDA only)."""
    if int(slots) < 1:
        raise ValueError(f"decode.slots={slots}: must be >= 1")
    B, dev = audio_emb.shape[0], audio_emb.device
    eos = model.eos_id
    lim = _as_limits(max_new, B).tolist()
    stats = GenStats()
    hyps: list[list[int]] = [[] for _ in range(B)]
    queue = deque(b for b in range(B) if lim[b] > 0)
    if not queue:
        return hyps, stats
    t_start = time.perf_counter()
    n = min(int(slots), len(queue))
    # room for the longest recording's prompt, its tokens and one thrown-away step
    longest = int(max(int(audio_lens[b]) + lim[b] for b in queue))
    budget = {} if pool_pages is None else {"pool_pages": pool_pages}
    cache = model.new_cache(n, longest + 1, dev, sparse=sparse, **budget)
    pages = None if pool_pages is None else _run_pages(cache, audio_lens, lim, longest, queue)
    pool = None if pool_pages is None else cache.pool_pages
    sl = _Slots(model, audio_emb, audio_lens, queue, stats, pages, pool)
    step = decode_stepper(model, cache, cuda_graphs)
    first = sl.admissible(n, [])
    if first < n:  # rows the pool cannot fill yet leave the step
        cache.reorder(torch.arange(first, device=dev))
    logits = sl.admit(cache, list(range(first)))
    scorer = ctc.scorer(eos) if ctc is not None else None
    state = scorer.initial(torch.tensor(sl.seq, device=dev)) if ctc is not None else None
    while True:
        tok, state = greedy_pick(logits, model, ctc, scorer, state, stats)
        stats.steps += 1
        ended = []
        for r, (s, k) in enumerate(zip(sl.seq, tok.tolist())):
            if k != eos:
                hyps[s].append(k)
            if k == eos or len(hyps[s]) >= lim[s]:
                ended.append(r)
        gone = set(ended)
        enter = sl.admissible(len(ended) + n - len(sl.seq),
                              [r for r in range(len(sl.seq)) if r not in gone])
        refill, drop = ended[:enter], ended[enter:]
        grow = enter - len(refill)  # recordings for rows that left the step earlier
        if drop:  # nothing (the queue is empty, or the pool is short): compact to the live rows
            keep = [r for r in range(len(sl.seq)) if r not in set(drop)]
            if not keep:
                break
            new_row = {old: new for new, old in enumerate(keep)}
            refill = [new_row[r] for r in refill]
            index = torch.tensor(keep, device=dev)
            cache.reorder(index)
            sl.seq = [sl.seq[r] for r in keep]
            tok = tok[index]
            if state is not None:
                state = state.index(index)
        logits = step(tok)
        if grow:  # empty rows at the end, filled below
            rows = len(sl.seq)
            index = torch.cat([torch.arange(rows, device=dev),
                               torch.full((grow,), -1, device=dev)])
            cache.reorder(index)
            refill += list(range(rows, rows + grow))
            logits = torch.cat([logits, logits.new_empty(grow, logits.shape[1])])
            if state is not None:  # placeholders (row 0), replaced by the put below
                state = state.index(index.clamp_min(0))
        if refill:
            logits[refill] = sl.admit(cache, refill)
            if state is not None:
                rows = torch.tensor(refill, device=dev)
                state = state.put(rows, scorer.initial(torch.tensor(
                    [sl.seq[r] for r in refill], device=dev)))
    if sl.waited:
        log.info("decode.kv_pool_pages=%d: %d of %d recordings waited in the queue for free "
                 "pages", pool_pages, len(sl.waited), B)
    sync(dev)
    stats.step_seconds = time.perf_counter() - t_start - stats.prefill_seconds
    if ctc is not None:
        stats.ctc_full_steps = scorer.full_steps
    stats.tokens = sum(len(h) for h in hyps)
    return hyps, stats


def _run_pages(cache, audio_lens, lim: list[int], longest: int, queue: deque) -> list[int]:
    """Pages each recording's whole run takes in `cache` (0 for those not queued); a ValueError
    names a recording that even the empty pool cannot hold."""
    # the longest run fills a row's max_len (which counts the model's whole prompt); a
    # recording d tokens shorter needs d fewer
    pages = [0] * len(lim)
    for b in queue:
        tokens = cache.max_len - (longest - int(audio_lens[b]) - lim[b])
        pages[b] = cache.pages_for(tokens)
        if pages[b] > cache.pool_pages:
            raise ValueError(
                f"decode.kv_pool_pages={cache.pool_pages}: recording {b} needs {pages[b]} pages "
                f"({tokens} tokens of prompt and transcript, {cache.page_size} per page), more "
                "than the whole pool; raise decode.kv_pool_pages or shorten the pieces "
                "(decode.max_segment_seconds)")
    return pages
