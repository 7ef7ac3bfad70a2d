"""CTC prefix scores for joint CTC/attention decoding, batched and vectorised over frames.

Why: the speech LLM's decoder alone loops or drifts on long recordings; the encoder's CTC head
knows where the audio is. Joint decoding (Watanabe et al. 2017, "Hybrid CTC/attention") ranks a
hypothesis h by (1-w) log p_dec(h) + w log psi(h), where psi(h) is the CTC *prefix* probability:
the probability that the CTC output of the recording starts with h. A repeat or a skipped stretch
of audio has a tiny prefix probability, and the end token gets the probability that the output is
exactly h, so the CTC head keeps the decoder on the audio and tells it when to stop.

Forward variables of a prefix g, on an axis tau = 0..T of "frames consumed" (tau = 0: none):
  r^n[tau]  P(the first tau frames collapse to g, frame tau-1 emitting g's last label)
  r^b[tau]  P(the first tau frames collapse to g, frame tau-1 a blank)
The empty prefix has r^n = 0 and r^b[tau] = prod_{u<tau} y^blank_u. Extending g by a label c:
  phi[tau]    = r^b_g[tau] + (r^n_g[tau] if c != last(g) else 0)     (a repeat needs a blank)
  r^n_h[tau]  = (r^n_h[tau-1] + phi[tau-1]) y^c_{tau-1},    r^n_h[0] = 0
  r^b_h[tau]  = (r^b_h[tau-1] + r^n_h[tau-1]) y^blank_{tau-1}, r^b_h[0] = 0
  psi(h)      = sum_{t < T} phi[t] y^c_t                     (c first emitted at frame t)
  end(g)      = r^n_g[T] + r^b_g[T]                          (the output is exactly g)
Each recursion is first-order linear, so with X[tau] = sum_{u<tau} log y^c_u it has the closed
form  log r^n_h[tau] = X[tau] + logcumsumexp_{j<tau}(log phi[j] - X[j]):  one cumsum and one
torch.logcumsumexp over all frames at once, no Python loop over frames (recordings have up to
~7500 encoder frames and ~3500 output steps). r^b follows from r^n the same way.

Cost per decoding step: psi for the K candidates of every hypothesis is one batched matmul of
[N, 2, W] weights with [N, W, K] posteriors; the forward variables are only computed for the
chosen extension of each hypothesis ([N, W], two logcumsumexp). W is the frame window (all T
frames, or `window` frames from where the prefix starts to live; see CTCPrefixScorer).
Recursions are float64: the cumulative sums reach ~1e5 nats on long recordings, where float32
would lose ~1e-2 nats per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NEG_INF = float("-inf")
LOG_FLOOR = -1e4  # log-probs below this are clamped: keeps every cumulative sum finite (no nan)
# A frame whose forward variable is this many nats below the prefix's best frame is "dead", and
# so is a term of psi's sum that far below the largest: dropped. float64 keeps ~37 nats anyway,
# so every hypothesis scoring within ~ALIVE_NATS of its parent gets its exact score; one scoring
# lower (hopeless next to the end token and the other candidates) may score lower still or -inf.
# It bounds the frame window: on the tiny model a prefix lives on 65-106 frames (median-max).
ALIVE_NATS = 100.0


@dataclass
class CTCState:
    """CTC forward variables of N hypotheses (rows), each tied to one sequence of the batch."""

    rn: torch.Tensor  # [N, T+1] float64, log r^n over tau = 0..T (-inf outside the last window)
    rb: torch.Tensor  # [N, T+1] float64, log r^b
    last: torch.Tensor  # [N] long, the prefix's last label (-1: empty prefix)
    score: torch.Tensor  # [N] float64, log psi of the prefix (0 for the empty prefix)
    seq: torch.Tensor  # [N] long, the batch row (recording piece) of the CTC log-probs
    lo: torch.Tensor  # [N] long, first live tau (r within ALIVE_NATS of its maximum)
    hi: torch.Tensor  # [N] long, last live tau

    def index(self, idx: torch.Tensor) -> CTCState:
        """Rows `idx` (compaction after a sequence ends, or beam search's parents)."""
        return CTCState(*(getattr(self, f)[idx] for f in
                          ("rn", "rb", "last", "score", "seq", "lo", "hi")))

    def put(self, rows: torch.Tensor, other: CTCState) -> CTCState:
        """These states with `rows` replaced by other's rows (a slot taking a new sequence)."""
        def fill(f):
            x = getattr(self, f).clone()
            x[rows] = getattr(other, f)
            return x
        return CTCState(*(fill(f) for f in ("rn", "rb", "last", "score", "seq", "lo", "hi")))


class CTCPrefixScorer:
    """Prefix scores of hypotheses against CTC log-probs [B, T, C] with lengths [B].

    Token ids are shared with the decoder: labels 0..C-1 except `blank` and `eos`; `eos` (the
    decoder's end token: outside 0..C-1 for our vocabularies, a class of a pretrained LLM's
    vocabulary-wide CTC) is always scored as the end of the hypothesis. Any other id (the blank,
    the task token, ids >= C) gets -inf.

    window > 0: each step computes only `window` frames per hypothesis, from the first live
    frame of its prefix, instead of all T (a prefix lives on a few seconds of audio: where its
    last label can end). A hypothesis whose live span does not fit (a long pause, a flat
    posterior) falls back to all frames for that step, so the scores equal the full ones.
    """

    def __init__(self, logp: torch.Tensor, lens: torch.Tensor, blank: int, eos: int,
                 window: int = 0):
        if logp.dim() != 3:
            raise ValueError(f"CTC log-probs must be [batch, frames, classes]; got {logp.shape}")
        B, T, C = logp.shape
        if not 0 <= blank < C:
            raise ValueError(f"CTC blank id {blank} outside 0..{C - 1}")
        if eos == blank:
            raise ValueError(f"eos id {eos} is the CTC blank; it must differ from it")
        self.B, self.T, self.C, self.blank, self.eos = B, T, C, blank, eos
        self.window = int(window) if 0 < int(window) < T else 0
        self.full_steps = 0  # windowed calls that needed all frames (diagnostics)
        self._top: torch.Tensor | None = None  # [B, T, P] per-frame best labels (proposals)
        dev = logp.device
        self.lens = torch.as_tensor(lens, device=dev).long().clamp(0, T)
        # the log-probs are read where a step needs them (log_y): no copy per class, which with
        # a pretrained LLM's ~50k classes would be tens of GB for a batch of long recordings
        self.logp = logp.detach()
        seq = torch.arange(B, device=dev)
        frames = torch.arange(T, device=dev).expand(B, T)
        blank = self.log_y(seq, torch.full((B, 1), blank, device=dev), frames)[:, 0]
        # X_blank[tau] = sum_{u<tau} log y_u(blank): the empty prefix's r^b
        self.cum_blank = torch.cat([blank.new_zeros(B, 1), blank.cumsum(-1)], 1)  # [B, T+1]

    def log_y(self, seq: torch.Tensor, labels: torch.Tensor, frames: torch.Tensor
              ) -> torch.Tensor:
        """float64 log y_t(c) [N, K, W] of sequences seq [N], classes labels [N, K] at frames
        [N, W]: clamped at LOG_FLOOR, 0 (log 1) on padding frames so every sum stays finite."""
        fr = frames.clamp(max=self.T - 1)
        v = self.logp[seq[:, None, None], fr[:, None, :], labels[:, :, None]].to(torch.float64)
        pad = frames >= self.lens[seq][:, None]
        return v.clamp_min(LOG_FLOOR).masked_fill(pad[:, None, :], 0.0)

    def _cum(self, seq, labels, frames) -> torch.Tensor:
        """[N, W+1] sums of log y_u(labels[n]) over the first k frames of each row's window
        (k = 0..W): the X of the closed form up to a per-row constant, which cancels in r^n,
        r^b and psi (each is X[tau] plus a logcumsumexp of terms minus X)."""
        x = self.log_y(seq, labels[:, None], frames)[:, 0]
        return torch.cat([x.new_zeros(x.shape[0], 1), x.cumsum(-1)], 1)

    # ------------------------------------------------------------------ states
    def initial(self, seq: torch.Tensor | None = None) -> CTCState:
        """The empty prefix for each row; seq[i] = its batch row (default: one row per sequence)."""
        dev = self.lens.device
        seq = torch.arange(self.B, device=dev) if seq is None else seq.to(dev).long()
        N, T1 = seq.numel(), self.T + 1
        rn = torch.full((N, T1), NEG_INF, dtype=torch.float64, device=dev)
        rb = self.cum_blank[seq]  # rb[0] = log 1
        lo, hi = self._live(rn, rb, seq, torch.zeros_like(seq))
        return CTCState(rn, rb, torch.full((N,), -1, dtype=torch.long, device=dev),
                        torch.zeros(N, dtype=torch.float64, device=dev), seq, lo, hi)

    def end_score(self, st: CTCState) -> torch.Tensor:
        """log P(the CTC output is exactly the prefix): log(r^n[T_b] + r^b[T_b]); [N]."""
        t_end = self.lens[st.seq][:, None]
        return torch.logaddexp(st.rn.gather(1, t_end), st.rb.gather(1, t_end)).squeeze(1)

    def _valid(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens >= 0) & (tokens < self.C) & (tokens != self.blank) & (tokens != self.eos)

    def _span(self, st: CTCState, force_full: bool = False) -> tuple[torch.Tensor, int]:
        """First frame and width of this step's frame window (all T when not windowing)."""
        W = self.window
        if force_full or not W or bool(((st.hi - st.lo) >= W).any()):
            if W and not force_full:
                self.full_steps += 1
            return torch.zeros_like(st.lo), self.T
        return st.lo.clamp(max=self.T - W), W

    def _live(self, rn, rb, seq, start):
        """First and last live tau of forward variables given on tau = start + 0..L-1."""
        L = rn.shape[1]
        tau = start[:, None] + torch.arange(L, device=rn.device)
        tot = torch.logaddexp(rn, rb).masked_fill(tau > self.lens[seq][:, None], NEG_INF)
        live = tot > tot.amax(-1, keepdim=True) - ALIVE_NATS  # all False if the prefix is dead
        first = live.long().argmax(-1)
        last = L - 1 - live.flip(-1).long().argmax(-1)
        return start + first, start + torch.where(live.any(-1), last, first)

    # ------------------------------------------------------------------ proposals
    def proposals(self, st: CTCState, lookahead: int, per_frame: int = 2) -> torch.Tensor:
        """Labels the CTC head itself proposes as each prefix's next token [N, lookahead *
        per_frame]: the `per_frame` best non-blank labels of the `lookahead` frames from where
        the prefix most likely ends (the tau maximising r^n + r^b). A decoder that does not yet
        rank the spoken token in its top k can then still be outvoted by CTC. Frames past a
        sequence's end propose the blank (which scores -inf)."""
        if self._top is None or self._top.shape[-1] != per_frame:
            self._top = self._frame_top_labels(per_frame)
        pos = torch.logaddexp(st.rn, st.rb).argmax(-1)  # [N] frames consumed
        fr = pos[:, None] + torch.arange(lookahead, device=pos.device)  # [N, F]
        top = self._top[st.seq[:, None], fr.clamp(max=self.T - 1)]  # [N, F, P]
        top = top.masked_fill((fr >= self.lens[st.seq][:, None])[..., None], self.blank)
        return top.flatten(1)

    def _frame_top_labels(self, per_frame: int, chunk: int = 256) -> torch.Tensor:
        """[B, T, per_frame] best labels of every frame, blank and end token excluded."""
        out = []
        for t0 in range(0, self.T, chunk):
            idx = self.logp[:, t0:t0 + chunk].topk(min(per_frame + 2, self.C), -1).indices
            bad = (idx == self.blank) | (idx == self.eos)
            order = bad.long().argsort(dim=-1, stable=True)[..., :per_frame]  # valid ones first
            out.append(idx.gather(-1, order))
        return torch.cat(out, 1)

    # ------------------------------------------------------------------ scoring
    def score(self, st: CTCState, tokens: torch.Tensor) -> torch.Tensor:
        """log psi(g + c) for candidate tokens [N, K] of each row; the end score for eos.

        psi = sum_t phi[t] y_t(c) is a dot product over frames: phi is shifted by its maximum
        and exponentiated once per row (two versions: after a blank only, for a repeated label;
        after anything, for another label), then one batched matmul with the candidates'
        posteriors. Terms more than ALIVE_NATS below phi's maximum are dropped (a candidate left
        with none scores -inf: it is hopeless next to the others)."""
        valid = self._valid(tokens)
        labels = torch.where(valid, tokens, 0)
        lo, W = self._span(st)
        fr = lo[:, None] + torch.arange(W, device=lo.device)  # [N, W] frames
        keep = fr < self.lens[st.seq][:, None]
        rb, rn = st.rb.gather(1, fr), st.rn.gather(1, fr)
        m = torch.maximum(rb.amax(-1), rn.amax(-1)).clamp_min(LOG_FLOOR * self.T)[:, None]

        def weights(r):  # exp(r - m), terms below the floor dropped without exp's slow path
            d = r - m
            return d.clamp_min(-ALIVE_NATS).exp() * ((d > -ALIVE_NATS) & keep)

        w_b = weights(rb)
        w = torch.stack([w_b, w_b + weights(rn)], 1)  # [N, 2, W]
        yc = self.log_y(st.seq, labels, fr).exp()  # [N, K, W]
        psi = torch.bmm(w, yc.transpose(1, 2)).log() + m[:, :, None]  # [N, 2, K]
        same = labels == st.last[:, None]
        psi = torch.where(same, psi[:, 0], psi[:, 1])
        psi = torch.where(valid, psi, NEG_INF)
        if (tokens == self.eos).any():
            psi = torch.where(tokens == self.eos, self.end_score(st)[:, None], psi)
        return psi

    def extend(self, st: CTCState, tokens: torch.Tensor, force_full: bool = False) -> CTCState:
        """The state of g + c for one token per row [N]; rows whose token is not a CTC label
        (the end token of a finished hypothesis) keep their state unchanged."""
        valid = self._valid(tokens)
        labels = torch.where(valid, tokens, 0)
        lo, W = self._span(st, force_full)
        tau = lo[:, None] + torch.arange(W + 1, device=lo.device)  # [N, W+1]
        X = self._cum(st.seq, labels, tau[:, :W])
        Xb = self.cum_blank[st.seq].gather(1, tau)
        rb_g, rn_g = st.rb.gather(1, tau[:, :W]), st.rn.gather(1, tau[:, :W])
        same = (labels == st.last)[:, None]
        phi = torch.where(same, rb_g, torch.logaddexp(rb_g, rn_g))  # [N, W]
        d = phi - X[:, :W]
        ninf = torch.full_like(X[:, :1], NEG_INF)  # nothing before the window's first frame
        rn = torch.cat([ninf, X[:, 1:] + torch.logcumsumexp(d, -1)], 1)
        rb = torch.cat([ninf, Xb[:, 1:] + torch.logcumsumexp(rn[:, :W] - Xb[:, :W], -1)], 1)
        # psi = sum_t phi[t] y_t(c), and phi[t] + log y_t(c) = d[t] + X[t+1]
        terms = (d + X[:, 1:]).masked_fill(tau[:, :W] >= self.lens[st.seq][:, None], NEG_INF)
        score = torch.logsumexp(terms, -1)
        new_lo, new_hi = self._live(rn, rb, st.seq, lo)
        if W < self.T:  # live up to the window's last frame: it may go on beyond, use all frames
            edge = valid & (new_hi == lo + W) & (lo + W < self.lens[st.seq])
            if bool(edge.any()):
                self.full_steps += 1
                return self.extend(st, tokens, force_full=True)
            rn = torch.full_like(st.rn, NEG_INF).scatter_(1, tau, rn)
            rb = torch.full_like(st.rb, NEG_INF).scatter_(1, tau, rb)
        kp = ~valid
        return CTCState(
            torch.where(kp[:, None], st.rn, rn), torch.where(kp[:, None], st.rb, rb),
            torch.where(kp, st.last, tokens), torch.where(kp, st.score, score), st.seq,
            torch.where(kp, st.lo, new_lo), torch.where(kp, st.hi, new_hi),
        )


def candidate_tokens(logp: torch.Tensor, eos: int, k: int, weight: float, n_labels: int,
                     proposed: torch.Tensor | None = None, filler: int = -1) -> torch.Tensor:
    """Tokens to score with CTC per row [N, k (+ P) + 1]: the decoder's top-k (end token
    excluded), the CTC head's own `proposed` labels [N, P] if given, and the end token, which is
    always a candidate so that the CTC end score can stop a decoder that would not. A proposal
    the row already holds becomes `filler` (an id CTC scores -inf: its blank), so no token is
    scored twice and a beam never holds two copies of one hypothesis. With weight 1 the decoder
    has no say: every CTC label (ids 0..n_labels-1; the blank/task id scores -inf) and the end
    token."""
    N, dev = logp.shape[0], logp.device
    if weight >= 1.0:
        labels = torch.arange(n_labels, device=dev).expand(N, n_labels)
    else:
        lp = logp.clone()
        lp[:, eos] = NEG_INF
        labels = lp.topk(min(k, lp.shape[1] - 1), dim=-1).indices
        if proposed is not None:
            labels = _drop_repeats(torch.cat([labels, proposed.to(labels.dtype)], 1), filler)
    return torch.cat([labels, torch.full((N, 1), eos, dtype=labels.dtype, device=dev)], 1)


def _drop_repeats(c: torch.Tensor, filler: int) -> torch.Tensor:
    """Each row's later copies of a token replaced by `filler` (the first copy stays)."""
    s, order = c.sort(dim=-1, stable=True)
    rep = torch.zeros_like(s, dtype=torch.bool)
    rep[:, 1:] = s[:, 1:] == s[:, :-1]
    return c.scatter(1, order, s.masked_fill(rep, filler))


def joint_increment(dec_logp: torch.Tensor, cands: torch.Tensor, ctc_scores: torch.Tensor,
                    st: CTCState, weight: float) -> torch.Tensor:
    """(1-w) log p_dec(c | g) + w (log psi(g+c) - log psi(g)) for candidates [N, K]; float64."""
    ctc = torch.where(ctc_scores == NEG_INF, NEG_INF, ctc_scores - st.score[:, None])
    if weight >= 1.0:
        return ctc
    # a filler candidate (the CTC blank) may lie past the decoder's vocabulary; it scores -inf
    dec = dec_logp.gather(1, cands.clamp(0, dec_logp.shape[1] - 1)).to(torch.float64)
    return (1.0 - weight) * dec + weight * ctc
