"""CTC prefix beam search over a whole recording, with an optional token n-gram LM.

Why: best-path decoding of the CTC head (decode.method=ctc_greedy) takes the likeliest label of
each frame, not the likeliest transcript; the prefix beam search sums every alignment of a
prefix (Graves 2012; Hannun et al. 2014, "first-pass LVCSR with CTC"), and shallow fusion with
an n-gram LM (ngram_lm.py) adds lm_weight * log P_lm(token | history) per emitted token plus
`token_bonus` per token (the LM's cost would otherwise favour short outputs), and a lexicon
(ngram_lm.Lexicon) adds `oov_penalty` (<= 0) per finished word it does not know: a character
n-gram still spells words that do not exist.

Each hypothesis keeps, for frames consumed so far, log P of its prefix ending in a blank (pb) and
in its last label (pnb). Frame t:
  prefix g stays:      pb'(g) += (pb(g) + pnb(g)) y_blank,  pnb'(g) += pnb(g) y_last(g)
  g extended by c:     pnb'(g c) += (pb(g) + pnb(g)) y_c   (c != last(g))
                       pnb'(g c) += pb(g) y_c              (c == last(g): a repeat needs a blank)
then the `beam` best by log(pb + pnb) + lm_weight * lm + token_bonus * len are kept. With an
unbounded beam and no LM, pb + pnb after the last frame is the exact CTC probability of g.

Speed (pure Python/NumPy, CPU): prefixes are nodes of a trie (an int each: parent, token, LM
score), so extending one costs O(1) whatever its length; a frame extends a hypothesis only by the
labels whose posterior is at least `min_prob`, and frames whose blank posterior is at least
`blank_skip` only update the stay terms (no label there is worth a branch).
"""

from __future__ import annotations

import math

import numpy as np

NEG = -math.inf


def _lse(a: float, b: float) -> float:
    if a == NEG:
        return b
    if b == NEG:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


class _Trie:
    """Prefixes as integer nodes: node 0 is the empty prefix."""

    def __init__(self):
        self.parent = [-1]
        self.token = [-1]
        self.length = [0]
        self.lm = [0.0]          # summed LM log-prob of the prefix's tokens
        self.history = [()]      # the LM's view: its last order-1 tokens
        self.word = [""]         # the unfinished last word (with a lexicon)
        self.oov = [0]           # finished words the lexicon does not know
        self.children: dict[tuple[int, int], int] = {}

    def child(self, node: int, tok: int, lm, keep: int, lexicon=None) -> int:
        key = (node, tok)
        got = self.children.get(key)
        if got is not None:
            return got
        new = len(self.parent)
        self.parent.append(node)
        self.token.append(tok)
        self.length.append(self.length[node] + 1)
        hist = self.history[node]
        if lm is not None:
            self.lm.append(self.lm[node] + float(lm.logprobs(hist)[tok]))
        else:
            self.lm.append(0.0)
        self.history.append((hist + (tok,))[-keep:] if keep else ())
        if lexicon is not None:
            piece = lexicon.pieces[tok]
            if piece.startswith(lexicon.boundary):         # tok starts a word: the last one ended
                self.oov.append(self.oov[node] + lexicon.unknown(self.word[node]))
                self.word.append(piece[len(lexicon.boundary):])
            else:
                self.oov.append(self.oov[node])
                self.word.append(self.word[node] + piece)
        self.children[key] = new
        return new

    def __len__(self) -> int:
        return len(self.parent)

    def compact(self, live: list[int]) -> dict[int, int]:
        """Drop every node that is not `live` or an ancestor of one (pruned hypotheses would
        otherwise stay for the whole recording: memory grew with its length, ~5 GB at 60 min).
        Returns old -> new ids; kept nodes keep their order (parents before children), so
        decoding after a compaction is the same as without."""
        keep: set[int] = set()
        for n in live:
            while n >= 0 and n not in keep:
                keep.add(n)
                n = self.parent[n]
        order = sorted(keep)
        new = {old: i for i, old in enumerate(order)}
        n = len(self.parent)
        for name in ("token", "length", "lm", "history", "word", "oov"):
            col = getattr(self, name)
            if len(col) == n:  # word and oov only grow with a lexicon
                setattr(self, name, [col[o] for o in order])
        self.parent = [new[self.parent[o]] if o else -1 for o in order]
        self.children = {(self.parent[i], self.token[i]): i for i in range(1, len(order))}
        return new

    def tokens(self, node: int) -> list[int]:
        out = []
        while node > 0:
            out.append(self.token[node])
            node = self.parent[node]
        return out[::-1]


def ctc_prefix_beam_search(logp: np.ndarray, blank: int, beam: int = 8, lm=None,
                           lm_weight: float = 0.0, token_bonus: float = 0.0,
                           min_prob: float = 1e-3, blank_skip: float = 0.999,
                           lexicon=None, oov_penalty: float = 0.0,
                           compact_every: int = 200_000) -> list[int]:
    """Best token sequence for CTC log-posteriors `logp` [T, C] (one recording, no padding).
    compact_every: once the trie has grown by this many nodes, drop the ones no live
    hypothesis descends from (memory stays ~ transcript length + compact_every nodes)."""
    if logp.ndim != 2:
        raise ValueError(f"logp must be [T, C], got shape {logp.shape}")
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    use_lm = lm is not None and lm_weight != 0.0
    keep = (lm.order - 1) if use_lm else 0
    trie = _Trie()
    logp = np.asarray(logp, dtype=np.float64)
    log_min = math.log(min_prob) if min_prob > 0 else NEG    # 0: every label is a candidate
    log_skip = math.log(blank_skip)                           # > 1: no frame is skipped
    beams: dict[int, tuple[float, float]] = {0: (0.0, NEG)}   # node -> (pb, pnb)
    grown_at = 1                                              # trie size after the last compaction

    use_lex = lexicon is not None and oov_penalty != 0.0
    lex = lexicon if use_lex else None

    def total(node: int, pb: float, pnb: float, final: bool = False) -> float:
        score = _lse(pb, pnb) + lm_weight * trie.lm[node] + token_bonus * trie.length[node]
        if use_lex:
            score += oov_penalty * (trie.oov[node] + (lex.unknown(trie.word[node]) if final else 0))
        return score

    for t in range(logp.shape[0]):
        row = logp[t]
        y_blank = float(row[blank])
        nxt: dict[int, list[float]] = {}
        if y_blank >= log_skip:
            cands = ()
        else:
            cands = [int(c) for c in np.nonzero(row >= log_min)[0] if c != blank]
        for node, (pb, pnb) in beams.items():
            both = _lse(pb, pnb)
            e = nxt.setdefault(node, [NEG, NEG])
            e[0] = _lse(e[0], both + y_blank)
            last = trie.token[node] if node else -1
            if node:
                e[1] = _lse(e[1], pnb + float(row[last]))
            for c in cands:
                child = trie.child(node, c, lm if use_lm else None, keep, lex)
                f = nxt.setdefault(child, [NEG, NEG])
                f[1] = _lse(f[1], (pb if c == last else both) + float(row[c]))
        if len(nxt) > beam:
            ranked = sorted(nxt.items(), key=lambda kv: total(kv[0], *kv[1]), reverse=True)
            nxt = dict(ranked[:beam])
        beams = {k: (v[0], v[1]) for k, v in nxt.items()}
        if len(trie) >= grown_at + compact_every:
            remap = trie.compact(list(beams))
            beams = {remap[k]: v for k, v in beams.items()}
            grown_at = len(trie)
    best = max(beams.items(), key=lambda kv: total(kv[0], *kv[1], final=True))[0]
    return trie.tokens(best)
