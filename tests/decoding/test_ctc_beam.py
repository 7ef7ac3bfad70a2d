"""CTC prefix beam search (decoding/ctc_beam.py) against exhaustive search, and the token
n-gram LM (decoding/ngram_lm.py) against hand-computed Kneser-Ney probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest
from decoding_helpers import ctc_brute_force, ctc_collapse

from unique_asr.decoding.ctc_beam import ctc_prefix_beam_search
from unique_asr.decoding.ngram_lm import TokenNgramLM


def _random_logp(rng, T, C, sharp=2.0):
    x = rng.normal(size=(T, C)) * sharp
    return x - np.log(np.exp(x).sum(1, keepdims=True))


@pytest.mark.parametrize("seed", range(6))
def test_unbounded_beam_finds_the_most_probable_labelling(seed):
    rng = np.random.default_rng(seed)
    logp = _random_logp(rng, 7, 3)
    exact = ctc_brute_force(logp, blank=2)
    best = max(exact, key=exact.get)
    got = ctc_prefix_beam_search(logp, blank=2, beam=10_000, min_prob=0.0, blank_skip=1.1)
    assert exact[tuple(got)] == pytest.approx(exact[best], rel=1e-9)


def test_narrow_beam_and_pruning_keep_a_peaky_best_path():
    """On peaky posteriors (as a trained CTC head gives) beam 1 with pruning is the best path."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=40)
    logp = np.full((120, 6), math.log(1e-4))
    for t in range(120):
        logp[t, 5 if t % 3 else labels[t // 3]] = 0.0
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    want = [int(x) for x in ctc_collapse([5 if t % 3 else labels[t // 3] for t in range(120)], 5)]
    assert ctc_prefix_beam_search(logp, blank=5, beam=1) == want
    assert ctc_prefix_beam_search(logp, blank=5, beam=8) == want


def test_lm_decides_what_the_audio_leaves_open():
    """Frames that say 'a or b, equally' resolve to what the LM has read; without it, to either."""
    lm = TokenNgramLM([[0, 1, 0, 1, 0, 1, 0, 1]], vocab=3, order=2)  # 'a b' alternate; c unused
    logp = np.log(np.array([[0.9, 0.05, 0.0001, 0.0499],      # a
                            [0.0001, 0.0001, 0.0001, 0.9997],  # blank
                            [0.45, 0.45, 0.0001, 0.0999]]))    # a or b
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    with_lm = ctc_prefix_beam_search(logp, blank=3, beam=8, lm=lm, lm_weight=1.0)
    assert with_lm == [0, 1]
    lm_ab = TokenNgramLM([[0, 0, 0, 0, 1]], vocab=3, order=2)      # now 'a a' is what it knows
    assert ctc_prefix_beam_search(logp, blank=3, beam=8, lm=lm_ab, lm_weight=1.0) == [0, 0]


def test_kneser_ney_by_hand():
    # bigrams: 0->1 twice, 1->0 twice, 0->2 once; D = n1 / (n1 + 2 n2) = 1 / 5 at order 2;
    # every unigram has one distinct predecessor, so the lower order is uniform
    lm = TokenNgramLM([[0, 1, 0, 1, 0, 2]], vocab=3, order=2)
    p0 = lm.probs((0,))
    backoff = 0.2 * 2 / 3   # D * distinct continuations of history 0 / its count
    want = np.array([0.0, 1.8 / 3, 0.8 / 3]) + backoff / 3
    np.testing.assert_allclose(p0, want, rtol=1e-12)
    np.testing.assert_allclose(lm.probs((2,)), np.full(3, 1 / 3))    # unseen history: backs off
    for h in [(), (0,), (1,), (2,), (1, 0)]:
        assert lm.probs(h).sum() == pytest.approx(1.0)
    assert lm.score([1, 0]) == pytest.approx(math.log(lm.probs(())[1]) + math.log(lm.probs((1,))[0]))


def test_higher_orders_normalise_and_prefer_what_they_saw():
    rng = np.random.default_rng(1)
    seq = list(rng.integers(0, 6, size=400)) + [0, 1, 2, 3] * 30
    lm = TokenNgramLM([seq], vocab=7, order=4)            # token 6 never occurs
    for h in [(), (0,), (0, 1), (0, 1, 2), (6, 6, 6), (5, 4, 3)]:
        p = lm.probs(h)
        assert p.sum() == pytest.approx(1.0) and (p > 0).all()
    assert lm.probs((0, 1, 2)).argmax() == 3
    assert lm.probs((0, 1, 2))[6] < 0.01
    with pytest.raises(ValueError, match="order"):
        TokenNgramLM([seq], vocab=7, order=0)


def test_lexicon_penalises_words_it_does_not_know():
    from unique_asr.decoding.ngram_lm import Lexicon

    lex = Lexicon({"ab", "b"}, ["\u2581", "a", "b"])                # tokens 0-2, blank 3
    frames = [[0.97, 0.01, 0.01, 0.01], [0.01, 0.01, 0.01, 0.97], [0.01, 0.97, 0.01, 0.01],
              [0.01, 0.01, 0.01, 0.97], [0.01, 0.53, 0.45, 0.01], [0.01, 0.01, 0.01, 0.97]]
    logp = np.log(np.array(frames))
    assert ctc_prefix_beam_search(logp, blank=3, beam=8) == [0, 1, 1]            # "aa"
    assert ctc_prefix_beam_search(logp, blank=3, beam=8, lexicon=lex, oov_penalty=-3.0) == [0, 1, 2]
    assert ctc_prefix_beam_search(logp, blank=3, beam=8, lexicon=lex, oov_penalty=0.0) == [0, 1, 1]
    assert lex.unknown("aa") == 1 and lex.unknown("ab") == 0 and lex.unknown("") == 0
    # the word also ends where the next one starts (a boundary token)
    logp2 = np.log(np.array(frames + [[0.97, 0.01, 0.01, 0.01]]))
    assert ctc_prefix_beam_search(logp2, blank=3, beam=8, lexicon=lex, oov_penalty=-3.0) == [0, 1, 2, 0]
    assert ctc_prefix_beam_search(logp2, blank=3, beam=8) == [0, 1, 1, 0]


@pytest.mark.parametrize("with_lm_and_lexicon", [True, False])
def test_trie_compaction_changes_nothing_but_memory(monkeypatch, with_lm_and_lexicon):
    """Compacting the prefix trie after every frame gives the same output as never compacting,
    with or without an LM and a lexicon (their per-node state moves with the nodes), and the trie
    keeps about the live hypotheses' ancestry instead of every branch ever tried."""
    from unique_asr.decoding import ctc_beam
    from unique_asr.decoding.ngram_lm import Lexicon

    rng = np.random.default_rng(3)
    logp = _random_logp(rng, 300, 5, sharp=3.0)
    lm = TokenNgramLM([list(rng.integers(0, 4, size=200))], vocab=4, order=3)
    lex = Lexicon({"ab", "b", "ca"}, ["\u2581", "a", "b", "c"])
    sizes: dict[str, int] = {}
    real = ctc_beam._Trie

    def spy(tag):
        class Spy(real):
            def tokens(self, node):
                sizes[tag] = len(self)
                return super().tokens(node)
        return Spy

    kw = {"blank": 4, "beam": 6, "lm": lm, "lm_weight": 0.7, "token_bonus": 0.5, "lexicon": lex,
          "oov_penalty": -1.0, "min_prob": 1e-2}
    if not with_lm_and_lexicon:
        kw.update(lm=None, lexicon=None)
    monkeypatch.setattr(ctc_beam, "_Trie", spy("never"))
    never = ctc_beam.ctc_prefix_beam_search(logp, compact_every=10**9, **kw)
    monkeypatch.setattr(ctc_beam, "_Trie", spy("every"))
    every = ctc_beam.ctc_prefix_beam_search(logp, compact_every=1, **kw)
    assert every == never and len(never) > 20
    # live: 6 hypotheses, each an ancestry of about the output's length; never: all branches
    assert sizes["every"] <= 6 * (len(never) + 10) and 5 * sizes["every"] < sizes["never"]


def test_lm_without_a_lang_dir_tokenizer_names_decode_lm_text():
    """A pretrained LLM's tokenizer has no lang dir beside it: ctc_beam with an LM must be told
    where its text is, and says so instead of failing on a missing path."""
    from unique_asr.decoding.config import DecodeConfig
    from unique_asr.decoding.ngram_lm import lm_for_decoding

    cfg = DecodeConfig(method="ctc_beam", lm_weight=0.5)
    with pytest.raises(ValueError, match="decode.lm_text=FILE"):
        lm_for_decoding(cfg, None, None)
    assert lm_for_decoding(DecodeConfig(method="ctc_beam", lm_weight=0.0, oov_penalty=0.0),
                           None, None) == (None, None)


def test_ngram_rows_are_sparse_and_the_cache_is_bounded():
    """With a pretrained LLM's ~50k-token vocabulary a dense row per history does not fit in
    memory: rows hold only the tokens seen after their history, and the logprobs cache empties
    itself at its size bound."""
    vocab = 50_000
    lm = TokenNgramLM([[1, 2, 3, 4, 2, 3, 5], [2, 3, 4]], vocab=vocab, order=3)
    for table in lm.tables:
        for ids, disc, _ in table.values():
            assert len(ids) == len(disc) <= 4
    p = np.exp(lm.logprobs((2, 3)))
    assert p.shape == (vocab,) and abs(p.sum() - 1.0) < 1e-9 and p[4] > p[5] > p[7]
    lm._cache_max = 3
    for h in [(1,), (2,), (3,), (4,), (5,)]:
        lm.logprobs(h)
    assert len(lm._log_cache) <= 3
