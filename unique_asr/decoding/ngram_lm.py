"""A token n-gram language model (interpolated Kneser-Ney) for CTC beam search.

Why: the CTC head of a small model spells by ear (most of tiny's errors on its own training voices
are one letter in a word: a lost doubled letter, a vowel); an n-gram over the tokenizer's pieces,
trained on text, knows which spellings exist. It is built at decoding time from a text file in
seconds (the lang dir's lm_text.txt, written by stage 3: the training sentences plus
data.lang.lm_extra_files, dev/test sentences dropped), so no LM file format is needed, and it works
for characters and BPE alike since it counts token ids.

Model (Chen & Goodman 1998, interpolated Kneser-Ney with one discount per order):
  P_n(w | h) = max(c(h w) - D_n, 0) / c(h) + D_n N1+(h .) / c(h) P_{n-1}(w | h')
where h' drops h's oldest token, the highest order counts tokens and lower orders count *contexts*
(N1+(. h' w): how many distinct tokens precede h' w), D_n = n1 / (n1 + 2 n2) from the counts of
counts, and the lowest order is interpolated with the uniform distribution. A history never seen
backs off to the next order whole. Sentences are joined into one stream per line with the word
separator between them, as a whole recording's transcript is.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class TokenNgramLM:
    """log P(next token | last order-1 tokens) over a vocabulary of `vocab` ids.

    `logprobs(history)` returns the whole distribution as a float64 array (cached per history):
    the beam search asks for a few candidates of many hypotheses that share histories. Each
    history's discounted counts are stored sparse (the tokens seen after it): a dense [vocab] row
    per history would need ~400 KB each with a pretrained LLM's ~50k-token vocabulary."""

    CACHE_BYTES = 512 << 20  # the logprobs cache is emptied when it would grow past this

    def __init__(self, sequences: list[list[int]], vocab: int, order: int = 9):
        if order < 1:
            raise ValueError(f"n-gram order must be >= 1, got {order}")
        if not any(sequences):
            raise ValueError("n-gram LM: no training text (empty sequences)")
        self.vocab, self.order = vocab, order
        # counts[n][history tuple of length n] -> {token: count}; n = 0 .. order-1
        counts: list[dict] = [defaultdict(lambda: defaultdict(float)) for _ in range(order)]
        for s in sequences:
            for i in range(len(s)):
                for n in range(min(order, i + 1)):
                    counts[n][tuple(s[i - n:i])][s[i]] += 1.0
        # lower orders: continuation counts (distinct left extensions), KN style
        # tables[n][history of n tokens] = (token ids, their discounted relative counts,
        # back-off weight)
        self.tables: list[dict[tuple, tuple[np.ndarray, np.ndarray, float]]] = []
        for n in range(order):
            if n < order - 1:
                cont: dict = defaultdict(lambda: defaultdict(float))
                for h, nxt in counts[n + 1].items():
                    for w in nxt:
                        cont[h[1:]][w] += 1.0
                table_counts = cont
            else:
                table_counts = counts[n]
            d = _discount(table_counts)
            table = {}
            for h, nxt in table_counts.items():
                ids = np.fromiter(nxt.keys(), dtype=np.int64, count=len(nxt))
                c = np.fromiter(nxt.values(), dtype=np.float64, count=len(nxt))
                total = c.sum()  # whole counts: exact in any order
                table[h] = (ids, np.maximum(c - d, 0.0) / total, d * len(nxt) / total)
            self.tables.append(table)
        self._log_cache: dict[tuple, np.ndarray] = {}
        self._cache_max = max(1, self.CACHE_BYTES // (8 * vocab))

    def _context(self, history) -> tuple:
        return tuple(history[max(0, len(history) - (self.order - 1)):]) if self.order > 1 else ()

    def probs(self, history) -> np.ndarray:
        """P(. | history) [vocab]; only the last order-1 tokens of history count."""
        h = self._context(history)
        p = np.full(self.vocab, 1.0 / self.vocab)
        for n in range(len(h) + 1):
            entry = self.tables[n].get(h[len(h) - n:])
            if entry is None:
                break  # a longer context is unseen too
            ids, disc, backoff = entry
            p = backoff * p
            p[ids] += disc
        return p

    def logprobs(self, history) -> np.ndarray:
        """log P(. | history), cached per context (the beam search asks again and again)."""
        h = self._context(history)
        hit = self._log_cache.get(h)
        if hit is None:
            if len(self._log_cache) >= self._cache_max:
                self._log_cache.clear()
            hit = self._log_cache[h] = np.log(np.maximum(self.probs(h), 1e-300))
        return hit

    def score(self, seq: list[int], history: tuple = ()) -> float:
        """Total log-probability of `seq` after `history` (tests, perplexity)."""
        h, total = list(history), 0.0
        for w in seq:
            total += float(self.logprobs(tuple(h))[w])
            h.append(w)
        return total


def _discount(table_counts: dict) -> float:
    """D = n1 / (n1 + 2 n2) from how many (history, token) pairs were seen once and twice."""
    n1 = n2 = 0
    for nxt in table_counts.values():
        for c in nxt.values():
            n1 += c == 1
            n2 += c == 2
    if n1 == 0:
        return 0.5
    return min(0.95, max(0.05, n1 / (n1 + 2 * n2)))


def lm_from_text_file(path, sp, order: int) -> TokenNgramLM:
    """The LM of a text file (one sentence per line) in the tokenizer's pieces: lines are joined
    into one stream per file, as recordings are decoded (sentence after sentence)."""
    with open(path, encoding="utf-8") as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    if not lines:
        raise ValueError(f"LM text {path} is empty")
    stream: list[int] = []
    for ln in lines:
        stream += sp.encode(ln)
    return TokenNgramLM([stream], sp.get_piece_size(), order)


class Lexicon:
    """The words of the LM text, for the beam search's out-of-vocabulary penalty.

    pieces[id] is the tokenizer's piece text; a piece that starts with `boundary` (sentencepiece's
    "\u2581") begins a new word, so the beam search knows when a word is finished."""

    boundary = "\u2581"

    def __init__(self, words, pieces: list[str]):
        self.words = frozenset(words)
        self.pieces = pieces

    def unknown(self, word: str) -> int:
        """1 if `word` is a word the lexicon does not know, 0 if it knows it or it is empty."""
        return int(bool(word) and word not in self.words)


def lexicon_from_text_file(path, sp) -> Lexicon:
    with open(path, encoding="utf-8") as f:
        words = {w for ln in f for w in ln.split()}
    return Lexicon(words, [sp.id_to_piece(i) for i in range(sp.get_piece_size())])


def lm_for_decoding(cfg, sp, bpe_path) -> tuple[TokenNgramLM | None, Lexicon | None]:
    """(token n-gram, lexicon) of decode.method=ctc_beam for a DecodeConfig `cfg`, each None
    when its weight (decode.lm_weight, decode.oov_penalty) is 0: built from decode.lm_text, by
    default the lang dir's lm_text.txt beside the tokenizer's model `bpe_path` (stage 3)."""
    want_lm = float(cfg.lm_weight) != 0.0
    want_lex = float(cfg.oov_penalty) != 0.0
    if cfg.method != "ctc_beam" or not (want_lm or want_lex):
        return None, None
    if not cfg.lm_text and bpe_path is None:
        raise ValueError("decode.method=ctc_beam with an LM: this model's tokenizer is not a lang "
                         "dir's BPE (a pretrained LLM's), so there is no lm_text.txt beside it: "
                         "set decode.lm_text=FILE (one sentence per line; stage 3 writes "
                         "<data>/lang_<type>/lm_text.txt), or decode.lm_weight=0 "
                         "decode.oov_penalty=0")
    path = Path(cfg.lm_text or Path(bpe_path).parent / "lm_text.txt")
    if not path.is_file():
        raise FileNotFoundError(f"LM text {path} not found: run stage 3 again (run.sh --stage 3 "
                                "--stop-stage 3 --force true) or set decode.lm_text=FILE "
                                "(one sentence per line), or decode.lm_weight=0 "
                                "decode.oov_penalty=0")
    lm = lm_from_text_file(path, sp, int(cfg.lm_order)) if want_lm else None
    lexicon = lexicon_from_text_file(path, sp) if want_lex else None
    log.info("LM: %s, lexicon: %s, from %s", f"{lm.order}-gram over {lm.vocab} tokens" if lm else
             "none", f"{len(lexicon.words)} words" if lexicon else "none", path)
    return lm, lexicon
