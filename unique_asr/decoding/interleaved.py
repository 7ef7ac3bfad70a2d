"""Greedy decoding of the interleaved layout (model.interleave_s > 0; models/interleave.py).

A whole recording is one sequence in one KV cache: its first chunk of audio tokens and the
prompt are prefilled, the transcript of that chunk is generated up to the end token, the end
token is fed, the next chunk's audio tokens and prompt are appended (model.extend, dense
attention over the row's whole history), and so on to the last chunk. Rows of a batch move
through their chunks independently: each step, the rows whose chunk has just ended are
extended together, and a row that has ended its last chunk leaves the batch.

Joint CTC/attention decoding scores each chunk's transcript against that chunk's CTC frames
only (a CTCPrefixScorer over (row, chunk) stretches of the log-probs): the end token then means
"this chunk's audio is all transcribed".
"""

from __future__ import annotations

import time

import torch

from unique_asr.attention.api import SparseConfig
from unique_asr.decoding.ctc_prefix import CTCPrefixScorer
from unique_asr.decoding.generate import GenStats, JointCTC, _steps, greedy_pick, sync


def _chunk_scorer(ctc: JointCTC, chunks: list[list[tuple[int, int]]], audio_lens, eos: int):
    """A CTC prefix scorer whose sequences are the (row, chunk) stretches of CTC frames, and the
    sequence index of each (row, chunk)."""
    rows, offs, lens, index = [], [], [], []
    for b, spans in enumerate(chunks):
        per = float(ctc.lens[b]) / max(1, int(audio_lens[b]))  # CTC frames per audio token
        index.append([])
        for a0, a1 in spans:
            f0, f1 = round(a0 * per), round(a1 * per)
            index[b].append(len(rows))
            rows.append(b), offs.append(f0), lens.append(max(0, f1 - f0))
    dev = ctc.logp.device
    sc = CTCPrefixScorer(ctc.logp, torch.tensor(lens, device=dev), ctc.blank, eos, ctc.window,
                         rows=torch.tensor(rows, device=dev), offsets=torch.tensor(offs, device=dev))
    return sc, index


@torch.inference_mode()
def interleaved_greedy(model, audio_emb: torch.Tensor, audio_lens: torch.Tensor,
                       chunks: list[list[tuple[int, int]]], limits: list[list[int]],
                       sparse: SparseConfig | None = None, ctc: JointCTC | None = None
                       ) -> tuple[list[list[int]], GenStats]:
    """Greedy transcripts of a batch of whole recordings in the interleaved layout.

    chunks[b]: the (first, last + 1) audio tokens of each chunk of row b, in order, covering
    its audio; limits[b]: the most transcript tokens per chunk. Returns the token ids per row
    (all chunks, end tokens stripped)."""
    B, dev, eos = len(chunks), audio_emb.device, model.eos_id
    P = model.prompt_ids.numel()
    stats = GenStats()
    t0 = time.perf_counter()
    need = [int(audio_lens[b]) + len(chunks[b]) * (P + 1) + sum(limits[b]) for b in range(B)]
    cache = model.new_cache(B, max(need) + 1, dev, sparse=sparse)
    at = [0] * B                                  # chunk index of each row
    out: list[list[int]] = [[] for _ in range(B)]
    logits = model.extend(*model.chunk_inputs(audio_emb, [c[0] for c in chunks]), cache)
    scorer = index = state = None
    if ctc is not None:
        scorer, index = _chunk_scorer(ctc, chunks, audio_lens, eos)
        state = scorer.initial(torch.tensor([index[b][0] for b in range(B)], device=dev))
    sync(dev)
    stats.prefill_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    rows = list(range(B))                         # the recording each cache row holds
    count = [0] * B                               # tokens of the current chunk per recording
    for _ in _steps(sum(map(sum, limits)) + sum(map(len, chunks))):
        tok, state = greedy_pick(logits, model, ctc, scorer, state, stats)
        stats.steps += 1
        ended, cut = [], set()  # cut: chunks ended at their token limit, not by the end token
        for i, (b, t) in enumerate(zip(rows, tok.tolist())):
            if t != eos:
                out[b].append(t)
                count[b] += 1
            if t == eos or count[b] >= limits[b][at[b]]:
                ended.append(i)
                if t != eos:
                    cut.add(rows[i])
        feed = tok
        keep = [i for i in range(len(rows))
                if not (i in ended and at[rows[i]] + 1 == len(chunks[rows[i]]))]
        if not keep:
            break
        if len(keep) < len(rows):  # rows that ended their last chunk leave the batch
            kt = torch.tensor(keep, device=dev)
            cache.reorder(kt)
            feed, logits = feed[kt], logits[kt]
            if state is not None:
                state = state.index(kt)
            ended = [keep.index(i) for i in ended if i in keep]
            rows = [rows[i] for i in keep]
        logits = model.decode_step(feed, cache)
        if ended:  # the next chunk of each row that ended one: its audio and the prompt
            for i in ended:
                at[rows[i]] += 1
                count[rows[i]] = 0
            et = torch.tensor(ended, device=dev)
            x, n = model.chunk_inputs(audio_emb[[rows[i] for i in ended]],
                                      [chunks[rows[i]][at[rows[i]]] for i in ended],
                                      [[eos] if rows[i] in cut else [] for i in ended])
            logits = logits.clone()
            logits[et] = model.extend(x, n, cache, rows=et)
            if state is not None:
                fresh = scorer.initial(torch.tensor([index[rows[i]][at[rows[i]]] for i in ended],
                                                    device=dev))
                state = state.put(et, fresh)
    sync(dev)
    stats.step_seconds = time.perf_counter() - t1
    if scorer is not None:
        stats.ctc_full_steps = scorer.full_steps
    stats.tokens = sum(map(len, out))
    return out, stats
