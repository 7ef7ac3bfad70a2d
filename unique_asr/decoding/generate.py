"""Compact generation loop (gpt-fast style): one dense prefill, then one decode step per token.

Works on a batch of sequences of different lengths: the model's KV cache keeps each sequence's
length, prefill returns each sequence's next-token logits, and every decode step appends one
token per sequence. The model contract: `new_cache(batch, max_len, device, sparse=SparseConfig)` (the decode
attention: dense, or a paged sparse method; models/attention.py), `prefill(audio_emb, audio_lens,
cache)`, `decode_step(tokens, cache)`, `cache.reorder(index)` (batch compaction and beam
search), and `eos_id` / `suppress_ids` (the end token; prompt tokens never emitted).

Token limits are per sequence (`max_new`). Greedy search drops finished sequences from the batch
(cache.reorder to the live rows), so a short recording in a batch of long ones costs nothing once
it has ended; beam search keeps finished hypotheses in place, extended only by the end token.

Joint CTC/attention decoding (`ctc=JointCTC(...)`, decode.ctc_weight > 0): each step scores the
decoder's top candidates (with decode.ctc_lookahead also the CTC head's own best labels just
after the prefix, and the end token) with the encoder's CTC prefix score too
(ctc_prefix.py) and ranks them by (1-w) log p_dec + w log psi_ctc. With ctc=None (weight 0) the
loops below are exactly the decoder-only ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from unique_asr.attention.api import SparseConfig
from unique_asr.decoding.ctc_prefix import (
    CTCPrefixScorer,
    CTCState,
    candidate_tokens,
    joint_increment,
)
from unique_asr.decoding.cuda_graph import decode_stepper


@dataclass
class GenStats:
    """Timing of one generate call (seconds; synchronised on CUDA)."""

    prefill_seconds: float = 0.0
    step_seconds: float = 0.0
    steps: int = 0
    tokens: int = 0  # emitted transcript tokens, end tokens excluded
    ctc_seconds: float = 0.0  # part of step_seconds spent on CTC prefix scores (joint decoding)
    ctc_full_steps: int = 0  # CTC calls whose live span did not fit the frame window


@dataclass
class JointCTC:
    """The encoder's CTC log-probs of the batch and how much they weigh in joint decoding."""

    logp: torch.Tensor  # [B, T_enc, n_text + 1] log-probs of the CTC head
    lens: torch.Tensor  # [B] encoder frames per sequence
    blank: int
    weight: float = 0.9  # w in (1-w) log p_dec + w log psi_ctc; 0 < w <= 1 (decode.ctc_weight)
    candidates: int = 32  # decoder candidates scored with CTC per hypothesis and step
    window: int = 256  # CTC frames computed per hypothesis and step (0: all; exact either way)
    lookahead: int = 0  # > 0: the CTC head's best labels of this many frames are candidates too

    def __post_init__(self):
        if not 0.0 < self.weight <= 1.0:
            raise ValueError(f"decode.ctc_weight={self.weight}: joint decoding needs 0 < w <= 1")
        if self.candidates < 1:
            raise ValueError(f"decode.ctc_candidates={self.candidates}: must be >= 1")
        if self.lookahead < 0:
            raise ValueError(f"decode.ctc_lookahead={self.lookahead}: must be >= 0")

    def scorer(self, eos: int) -> CTCPrefixScorer:
        return CTCPrefixScorer(self.logp, self.lens, self.blank, eos, self.window)

    def candidates_of(self, logp: torch.Tensor, scorer: CTCPrefixScorer,
                      state: CTCState) -> torch.Tensor:
        """The tokens each hypothesis scores with CTC this step (candidate_tokens)."""
        prop = scorer.proposals(state, self.lookahead) if self.lookahead else None
        return candidate_tokens(logp, scorer.eos, self.candidates, self.weight, scorer.C,
                                prop, scorer.blank)


def sync(device) -> None:
    """Wait for queued CUDA work so wall-clock timings are real."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _as_limits(max_new, batch: int) -> torch.Tensor:
    lim = torch.as_tensor(max_new, dtype=torch.long).flatten()
    if lim.numel() == 1:
        lim = lim.expand(batch)
    if lim.numel() != batch or (lim < 0).any():
        raise ValueError(f"max_new must be one non-negative limit or one per sequence; got {lim}")
    return lim.clone()


def _mask_logits(logits: torch.Tensor, suppress: tuple[int, ...]) -> torch.Tensor:
    logits = logits.float()
    if suppress:
        logits[:, list(suppress)] = float("-inf")
    return logits


def _steps(n_max: int):
    """Decode step indices, with a progress bar for long-form generations."""
    return tqdm(range(n_max), desc="decode steps", leave=False, mininterval=10,
                disable=n_max < 512)


def _prefill(model, audio_emb, audio_lens, max_new, sparse):
    """Limits, a cache big enough for the longest run, and the first logits (timed)."""
    B, dev = audio_emb.shape[0], audio_emb.device
    lim = _as_limits(max_new, B).to(dev)
    n_max = int(lim.max()) if B else 0
    stats = GenStats()
    t0 = time.perf_counter()
    cache = model.new_cache(B, int(audio_lens.max()) + 1 + n_max, dev, sparse=sparse)
    logits = model.prefill(audio_emb, audio_lens, cache)
    sync(dev)
    stats.prefill_seconds = time.perf_counter() - t0
    return lim, n_max, cache, logits, stats


def greedy_pick(logits, model, ctc: JointCTC | None, scorer: CTCPrefixScorer | None, state,
                stats: GenStats):
    """The next token of each row: the argmax of the decoder's logits, or with joint CTC the
    best joint candidate, whose CTC state is extended by it. -> (tokens [N], state)."""
    suppress = tuple(model.suppress_ids)
    if ctc is None:
        return _mask_logits(logits, suppress).argmax(-1), state
    sync(logits.device)  # the decoder step's queued GPU work is not CTC time
    tc = time.perf_counter()
    logp = torch.log_softmax(_mask_logits(logits, suppress), -1)
    cands = ctc.candidates_of(logp, scorer, state)
    inc = joint_increment(logp, cands, scorer.score(state, cands), state, ctc.weight)
    tok = cands.gather(1, inc.argmax(-1, keepdim=True)).squeeze(1)
    state = scorer.extend(state, tok)
    sync(logits.device)
    stats.ctc_seconds += time.perf_counter() - tc
    return tok, state


@torch.inference_mode()
def greedy_search(
    model,
    audio_emb: torch.Tensor,
    audio_lens: torch.Tensor,
    max_new,
    sparse: SparseConfig | None = None,
    ctc: JointCTC | None = None,
    cuda_graphs: bool = False,
) -> tuple[list[list[int]], GenStats]:
    """Greedy decoding of a batch. Returns the token ids per sequence (end token stripped).
    sparse: the decode attention (default dense). cuda_graphs: decode steps replayed from CUDA
    graphs (decoding/cuda_graph.py; CUDA only, ignored elsewhere).

    With `ctc`, each step takes the best joint CTC/attention candidate instead of the argmax."""
    B, dev = audio_emb.shape[0], audio_emb.device
    eos = model.eos_id
    lim, n_max, cache, logits, stats = _prefill(model, audio_emb, audio_lens, max_new, sparse)
    step = decode_stepper(model, cache, cuda_graphs)
    t1 = time.perf_counter()
    out = torch.full((B, max(n_max, 1)), eos, dtype=torch.long, device=dev)
    rows = torch.arange(B, device=dev)  # the sequence each cache row holds
    live = lim > 0
    n_live = int(live.sum())  # one host read per step: it decides compaction and the stop
    scorer = ctc.scorer(eos) if ctc is not None else None
    state = scorer.initial() if ctc is not None else None
    for t in _steps(n_max):
        if n_live < rows.numel():  # drop finished sequences from the batch (compaction)
            keep = live.nonzero().squeeze(1)
            cache.reorder(keep)
            rows, lim, logits = rows[keep], lim[keep], logits[keep]
            if ctc is not None:
                state = state.index(keep)
        tok, state = greedy_pick(logits, model, ctc, scorer, state, stats)
        out[rows, t] = tok
        live = (tok != eos) & (lim > t + 1)
        stats.steps += 1
        n_live = int(live.sum())
        if n_live == 0:
            break
        logits = step(tok)
    sync(dev)
    stats.step_seconds = time.perf_counter() - t1
    if ctc is not None:
        stats.ctc_full_steps = scorer.full_steps
    hyps = []
    for row in out.tolist():
        n = row.index(eos) if eos in row else len(row)
        hyps.append(row[:n])
    stats.tokens = sum(len(h) for h in hyps)
    return hyps, stats


@torch.inference_mode()
def beam_search(
    model,
    audio_emb: torch.Tensor,
    audio_lens: torch.Tensor,
    max_new,
    beam: int = 4,
    length_penalty: float = 1.0,
    sparse: SparseConfig | None = None,
    ctc: JointCTC | None = None,
) -> tuple[list[list[int]], GenStats]:
    """Batched beam search: `beam` hypotheses per sequence share one KV cache of B*beam rows.

    A finished hypothesis stays in its slot, extended only by the end token at no cost. At the
    end the best hypothesis maximises log p / len^length_penalty (len counts the end token).
    Histories are kept as back-pointers (O(1) per step), not copied per step.
    With `ctc`, log p is the joint score (1-w) log p_dec + w log psi_ctc, and each hypothesis
    expands only into the decoder's top `ctc.candidates` tokens and the end token.
    """
    B, K, dev = audio_emb.shape[0], beam, audio_emb.device
    if K < 1:
        raise ValueError(f"decode.beam must be >= 1, got {K}")
    eos, suppress = model.eos_id, tuple(model.suppress_ids)
    lim, n_max, cache, logits, stats = _prefill(model, audio_emb, audio_lens, max_new, sparse)
    logp = torch.log_softmax(_mask_logits(logits, suppress), -1)
    t1 = time.perf_counter()
    V = logp.shape[-1]
    rows = torch.arange(B, device=dev)
    identity = torch.arange(B * K, device=dev)
    cache.reorder(rows.repeat_interleave(K))  # K copies of every sequence
    # Only beam 0 is live at the start, so the first expansion does not pick K copies of a token.
    score = torch.full((B, K), float("-inf"), device=dev)
    score[:, 0] = 0.0
    logp = logp.repeat_interleave(K, 0)
    length = torch.zeros(B, K, dtype=torch.long, device=dev)
    fin = torch.zeros(B, K, dtype=torch.bool, device=dev)
    toks, parents = [], []
    if ctc is not None:
        scorer = ctc.scorer(eos)
        state = scorer.initial(rows.repeat_interleave(K))
        score = score.double()
    for t in _steps(n_max):
        fin = fin | (lim <= t)[:, None]  # out of room: ends here (an end token is forced)
        if ctc is None:
            score, parent, tok = _expand(score, logp.view(B, K, V), fin, eos)
        else:
            sync(dev)  # the decoder step's queued GPU work is not CTC time
            tc = time.perf_counter()
            cands = ctc.candidates_of(logp, scorer, state)
            J = cands.shape[1]  # the end token is the last candidate
            inc = joint_increment(logp, cands, scorer.score(state, cands), state, ctc.weight)
            inc = inc.view(B, K, J).masked_fill(fin[:, :, None], float("-inf"))
            inc[..., -1] = torch.where(fin, torch.zeros_like(inc[..., -1]), inc[..., -1])
            score, idx = (score[:, :, None] + inc).view(B, K * J).topk(K, dim=-1)
            parent, tok = idx // J, cands.view(B, K * J).gather(1, idx)
            # a finished hypothesis (end token) keeps its state; the others extend theirs
            state = scorer.extend(state.index((rows[:, None] * K + parent).flatten()),
                                  tok.flatten())
            sync(dev)
            stats.ctc_seconds += time.perf_counter() - tc
        fin = fin.gather(1, parent)
        length = length.gather(1, parent) + (~fin).long()
        fin = fin | (tok == eos)
        toks.append(tok)
        parents.append(parent)
        stats.steps += 1
        if bool(fin.all()):
            break
        flat = (rows[:, None] * K + parent).flatten()
        if not torch.equal(flat, identity):  # reordering copies the whole cache: skip if a no-op
            cache.reorder(flat)
        logp = torch.log_softmax(_mask_logits(model.decode_step(tok.flatten(), cache), suppress), -1)
    sync(dev)
    stats.step_seconds = time.perf_counter() - t1
    if ctc is not None:
        stats.ctc_full_steps = scorer.full_steps
    if not toks:
        return [[] for _ in range(B)], stats
    best = (score / length.clamp_min(1).float() ** length_penalty).argmax(-1)
    hyps = _backtrack(toks, parents, best, eos)
    stats.tokens = sum(len(h) for h in hyps)
    return hyps, stats


def _expand(score, logp, fin, eos):
    """One beam step without CTC: the K best of K x V extensions of each sequence's beams.
    A finished beam extends only by the end token, at no cost. -> (score, parent, token) [B, K]."""
    B, K, V = logp.shape
    lp = logp.clone()
    lp[fin] = float("-inf")
    lp[..., eos] = torch.where(fin, torch.zeros_like(lp[..., eos]), lp[..., eos])
    score, idx = (score[:, :, None] + lp).view(B, K * V).topk(K, dim=-1)
    return score, idx // V, idx % V


def _backtrack(toks, parents, best, eos) -> list[list[int]]:
    """The token history of beam best[b] of every sequence, through the back-pointers, cut at
    its end token."""
    tok_t, par_t = torch.stack(toks).tolist(), torch.stack(parents).tolist()  # [T][B][K]
    hyps = []
    for b in range(len(best)):
        k, seq = int(best[b]), []
        for t in range(len(tok_t) - 1, -1, -1):
            seq.append(tok_t[t][b][k])
            k = par_t[t][b][k]
        seq.reverse()
        hyps.append(seq[: seq.index(eos) if eos in seq else len(seq)])
    return hyps


@torch.inference_mode()
def greedy_decode(model, feats: torch.Tensor, feat_lens: torch.Tensor, max_new_tokens: int):
    """fbank [B,T,80] -> greedy text ids per sequence (training validation's entry point)."""
    audio, audio_lens = model.encode(feats, feat_lens)
    return greedy_search(model, audio, audio_lens, max_new_tokens)[0]
