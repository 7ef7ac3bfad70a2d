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
"""

from __future__ import annotations

import time
from collections import deque

import torch

from unique_asr.attention.api import SparseConfig
from unique_asr.decoding.generate import GenStats, JointCTC, _as_limits, greedy_pick, sync
from unique_asr.models.attention import SlotRows


class _Slots:
    """Which queued recording each cache row holds, and the prefill that admits the next ones."""

    def __init__(self, model, audio_emb, audio_lens, queue: deque, stats: GenStats):
        self.model, self.emb, self.lens = model, audio_emb, audio_lens
        self.queue, self.stats = queue, stats
        self.seq: list[int] = []  # the recording of each row

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
) -> tuple[list[list[int]], GenStats]:
    """Greedy decoding of the recordings of audio_emb [B, Ta, D] (a queue, in order) through
    `slots` cache rows. Returns the token ids per recording (end token stripped), as
    greedy_search does."""
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
    cache = model.new_cache(n, longest + 1, dev, sparse=sparse)
    sl = _Slots(model, audio_emb, audio_lens, queue, stats)
    logits = sl.admit(cache, list(range(n)))
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
        refill, drop = ended[: len(queue)], ended[len(queue):]
        if drop:  # nothing left to admit: compact the batch to the rows still decoding
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
        logits = model.decode_step(tok, cache)
        if refill:
            logits[refill] = sl.admit(cache, refill)
            if state is not None:
                rows = torch.tensor(refill, device=dev)
                state = state.put(rows, scorer.initial(torch.tensor(
                    [sl.seq[r] for r in refill], device=dev)))
    sync(dev)
    stats.step_seconds = time.perf_counter() - t_start - stats.prefill_seconds
    if ctc is not None:
        stats.ctc_full_steps = scorer.full_steps
    stats.tokens = sum(len(h) for h in hyps)
    return hyps, stats
