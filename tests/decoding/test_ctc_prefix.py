"""CTC prefix scorer against brute force and a per-frame loop; joint CTC/attention search."""

import math

import pytest
import torch
import torch.nn.functional as F
from decoding_helpers import ctc_brute_force

from unique_asr.decoding.ctc_prefix import CTCPrefixScorer
from unique_asr.decoding.generate import JointCTC, beam_search, greedy_search

NEG = float("-inf")


def loop_forward(logp, prefix, blank):
    """Per-frame reference (float64, probability domain): r^n, r^b over tau = 0..T of a prefix,
    and its prefix probability psi, built label by label."""
    y = logp.double().exp()
    T = y.shape[0]
    rn, rb = [0.0] * (T + 1), [1.0] + [0.0] * T
    for t in range(T):
        rb[t + 1] = rb[t] * float(y[t, blank])
    psi, last = 1.0, None
    for c in prefix:
        phi = [rb[t] + (rn[t] if c != last else 0.0) for t in range(T + 1)]
        nrn, nrb = [0.0] * (T + 1), [0.0] * (T + 1)
        psi = 0.0
        for t in range(T):
            nrn[t + 1] = (nrn[t] + phi[t]) * float(y[t, c])
            nrb[t + 1] = (nrb[t] + nrn[t]) * float(y[t, blank])
            psi += phi[t] * float(y[t, c])
        rn, rb, last = nrn, nrb, c
    return rn, rb, psi


def _state_of(scorer, prefixes):
    """Scorer state of one prefix per batch row, extended token by token."""
    st = scorer.initial()
    for i in range(max(map(len, prefixes), default=0)):
        tok = torch.tensor([p[i] if i < len(p) else scorer.eos for p in prefixes])
        st = scorer.extend(st, tok)  # eos: row keeps its state
    return st


def _log(x):
    return math.log(x) if x > 0 else NEG


def test_prefix_scores_equal_brute_force_over_all_alignments():
    g = torch.Generator().manual_seed(0)
    B, T, C, blank, eos = 3, 6, 4, 3, 7  # labels 0, 1, 2; blank last as in the speech LLM
    # float64 posteriors: psi assumes each frame sums to 1 (float32 is off by ~1e-7 per frame)
    logp = torch.randn(B, T, C, generator=g, dtype=torch.float64).log_softmax(-1)
    lens = torch.tensor([6, 4, 3])
    prefixes = [[0, 0], [], [1, 2]]  # repeated label, empty prefix, plain
    scorer = CTCPrefixScorer(logp, lens, blank, eos)
    st = _state_of(scorer, prefixes)
    cands = torch.tensor([[0, 1, 2, eos, blank]] * B)
    got = scorer.score(st, cands)
    for b in range(B):
        probs = ctc_brute_force(logp[b, : lens[b]], blank)
        for k, c in enumerate(cands[b].tolist()):
            if c == eos:  # exactly the prefix
                want = _log(probs.get(tuple(prefixes[b]), 0.0))
            elif c == blank:
                want = NEG
            else:  # the output starts with prefix + c
                h = tuple(prefixes[b] + [c])
                want = _log(sum(p for out, p in probs.items() if out[: len(h)] == h))
            assert float(got[b, k]) == pytest.approx(want, abs=1e-9), (b, c)
        # the state's own score is the prefix probability too
        h = tuple(prefixes[b])
        want = _log(sum(p for out, p in probs.items() if out[: len(h)] == h))
        assert float(st.score[b]) == pytest.approx(want, abs=1e-9)


def test_repeated_label_needs_a_blank_between():
    logp = torch.full((1, 3, 3), 1 / 3, dtype=torch.float64).log()  # labels 0, 1; blank 2
    for T, want_aa in ((2, NEG), (3, math.log(1 / 27))):  # "a a": only (a, blank, a) in 3 frames
        scorer = CTCPrefixScorer(logp[:, :T], torch.tensor([T]), blank=2, eos=5)
        st = scorer.extend(scorer.initial(), torch.tensor([0]))
        got = scorer.score(st, torch.tensor([[0, 1, 5]]))[0].tolist()
        assert got[0] == pytest.approx(want_aa)
        assert got[1] > NEG  # "a b" fits
        assert got[2] == pytest.approx(math.log(ctc_brute_force(logp[0, :T], 2)[(0,)]))


def test_vectorised_equals_per_frame_loop_on_long_random_input():
    g = torch.Generator().manual_seed(1)
    B, T, C, blank, eos = 4, 60, 6, 5, 9
    logp = (3 * torch.randn(B, T, C, generator=g)).log_softmax(-1)
    lens = torch.tensor([60, 37, 51, 12])
    prefixes = [torch.randint(0, 5, (n,), generator=g).tolist() for n in (9, 6, 0, 4)]
    prefixes[0][3] = prefixes[0][2]  # a repeat
    scorer = CTCPrefixScorer(logp, lens, blank, eos)
    st = _state_of(scorer, prefixes)
    cands = torch.tensor([[0, 1, 2, 3, 4, eos]] * B)
    got = scorer.score(st, cands)
    for b in range(B):
        x = logp[b, : lens[b]]
        rn, rb, psi = loop_forward(x, prefixes[b], blank)
        Tb = int(lens[b])
        torch.testing.assert_close(st.rn[b, : Tb + 1].exp(), torch.tensor(rn, dtype=torch.float64),
                                   rtol=1e-9, atol=1e-300)
        torch.testing.assert_close(st.rb[b, : Tb + 1].exp(), torch.tensor(rb, dtype=torch.float64),
                                   rtol=1e-9, atol=1e-300)
        assert float(st.score[b]) == pytest.approx(_log(psi), rel=1e-9)
        for k, c in enumerate(cands[b].tolist()):
            if c == eos:
                want = _log(rn[Tb] + rb[Tb])
            else:
                want = _log(loop_forward(x, prefixes[b] + [c], blank)[2])
            assert float(got[b, k]) == pytest.approx(want, rel=1e-9, abs=1e-9), (b, c)


def test_scorer_keeps_no_per_class_copy_of_the_log_probs():
    """With a pretrained LLM's vocabulary-wide CTC (~50k classes) a float64 copy per class of a
    batch of long recordings is tens of GB: the scorer reads the given log-probs in place and
    keeps only per-sequence tables."""
    B, T, C = 2, 50, 300
    logp = torch.randn(B, T, C).log_softmax(-1)
    scorer = CTCPrefixScorer(logp, torch.tensor([50, 31]), blank=C - 1, eos=C)
    tensors = [v for v in vars(scorer).values() if torch.is_tensor(v)]
    assert any(t.data_ptr() == logp.data_ptr() for t in tensors)
    assert max(t.numel() for t in tensors if t.data_ptr() != logp.data_ptr()) <= B * (T + 1)


def test_end_score_of_full_hypothesis_equals_ctc_loss():
    g = torch.Generator().manual_seed(2)
    B, T, C, blank = 3, 300, 8, 7
    logp = torch.randn(B, T, C, generator=g).log_softmax(-1)
    lens = torch.tensor([300, 211, 90])
    labels = [torch.randint(0, 7, (n,), generator=g).tolist() for n in (40, 25, 30)]
    scorer = CTCPrefixScorer(logp, lens, blank, eos=C + 1)
    end = scorer.end_score(_state_of(scorer, labels))
    targets = torch.nn.utils.rnn.pad_sequence([torch.tensor(x) for x in labels], True)
    loss = F.ctc_loss(logp.double().transpose(0, 1), targets, lens,
                      torch.tensor([len(x) for x in labels]), blank=blank, reduction="none")
    torch.testing.assert_close(end, -loss, rtol=1e-9, atol=1e-8)


def _peaked(labels_per_frame, C, blank, sharp=8.0):
    """CTC log-probs [T, C] whose best path is the given frame labels."""
    logits = torch.zeros(len(labels_per_frame), C)
    for t, k in enumerate(labels_per_frame):
        logits[t, k] = sharp
    return logits.log_softmax(-1)


def _looping_decoder(n_text):
    """A decoder that always wants token 3 next and rarely says eos: loops without CTC."""
    def fn(audio, hist):
        lp = torch.linspace(0, -3, n_text + 2)
        lp[3] = 2.0
        lp[n_text + 1] = -4.0
        return lp
    return fn


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_joint_weight_one_recovers_ctc_best_path(make_fake, search):
    n_text, blank = 10, 10  # CTC classes 0..10, blank = n_text (= the task id)
    frames = [[10, 1, 1, 10, 1, 10, 4, 4, 7, 10, 10], [2, 10, 2, 2, 10, 10, 0, 10, 10, 10, 10]]
    logp = torch.stack([_peaked(f, n_text + 1, blank) for f in frames])
    lens = torch.tensor([11, 7])
    want = [[1, 1, 4, 7], [2, 2, 0]]  # merge repeats, drop blanks; "1 blank 1" keeps both
    m = make_fake(_looping_decoder(n_text), n_text)
    emb, alens = torch.zeros(2, 6, 4), torch.tensor([6, 4])
    assert greedy_search(m, emb, alens, max_new=12)[0][0] == [3] * 12  # loops on its own
    for w in (1.0, 0.7):  # with w = 0.7 the CTC still outweighs the decoder's loop
        ctc = JointCTC(logp, lens, blank, weight=w, candidates=n_text)
        if search == "greedy":
            hyps, st = greedy_search(m, emb, alens, max_new=12, ctc=ctc)
        else:
            hyps, st = beam_search(m, emb, alens, max_new=12, beam=3, ctc=ctc)
        assert hyps == want, w
        assert st.ctc_seconds > 0


def test_joint_greedy_long_input_windowed_equals_all_frames(make_fake):
    """~120 labels over ~500 frames with a 150-frame pause: joint greedy with a 32-frame window
    (falling back across the pause) gives the all-frames result, the CTC best path."""
    n_text, blank = 10, 10
    g = torch.Generator().manual_seed(5)
    want, frames = torch.randint(0, 10, (120,), generator=g).tolist(), []
    for i, c in enumerate(want):
        frames += [c] * int(torch.randint(1, 3, (1,), generator=g)) + [blank]
        frames += [blank] * (150 if i == 60 else 0)
    logp = _peaked(frames, n_text + 1, blank)[None]
    m = make_fake(_looping_decoder(n_text), n_text)
    emb, alens = torch.zeros(1, 6, 4), torch.tensor([6])
    for window in (0, 32):
        ctc = JointCTC(logp, torch.tensor([len(frames)]), blank, weight=0.7, candidates=10,
                       window=window)
        hyps, st = greedy_search(m, emb, alens, max_new=200, ctc=ctc)
        assert hyps == [want], window
        assert (st.ctc_full_steps > 0) == (window > 0)


def test_joint_search_with_ctc_candidates_limited_to_decoder_top_k(make_fake):
    """Candidates come from the decoder's top-k: a label outside them cannot be chosen; the
    end token is always a candidate, so CTC stops the loop once the audio is used up."""
    n_text, blank = 10, 10
    logp = _peaked([3, 10, 3, 10, 10], n_text + 1, blank)[None]
    m = make_fake(_looping_decoder(n_text), n_text)
    emb, alens = torch.zeros(1, 6, 4), torch.tensor([6])
    ctc = JointCTC(logp, torch.tensor([5]), blank, weight=0.5, candidates=2)  # tokens 3 and 0
    assert greedy_search(m, emb, alens, max_new=12, ctc=ctc)[0] == [[3, 3]]
    assert beam_search(m, emb, alens, max_new=12, beam=2, ctc=ctc)[0] == [[3, 3]]


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_ctc_lookahead_proposes_tokens_outside_the_decoder_top_k(make_fake, search):
    """The decoder's top 2 (tokens 3 and 0) never hold the spoken tokens: without proposals the
    CTC cannot choose them; with decode.ctc_lookahead the CTC head's own best labels after the
    prefix are candidates and joint decoding follows the audio (two rows of different lengths)."""
    n_text, blank = 10, 10
    frames = [[5, 10, 7, 7, 10, 5, 10, 10], [8, 8, 10, 6, 10, 10]]
    want = [[5, 7, 5], [8, 6]]
    logp = torch.stack([_peaked(f + [blank] * (8 - len(f)), n_text + 1, blank) for f in frames])
    lens = torch.tensor([8, 6])
    m = make_fake(_looping_decoder(n_text), n_text)
    emb, alens = torch.zeros(2, 6, 4), torch.tensor([6, 4])
    got = {}
    for la in (0, 3):
        ctc = JointCTC(logp, lens, blank, weight=0.5, candidates=2, lookahead=la)
        if search == "greedy":
            got[la] = greedy_search(m, emb, alens, max_new=12, ctc=ctc)[0]
        else:
            got[la] = beam_search(m, emb, alens, max_new=12, beam=3, ctc=ctc)[0]
    assert got[3] == want
    assert all(5 not in h and 8 not in h for h in got[0])
    with pytest.raises(ValueError, match="ctc_lookahead"):
        JointCTC(logp, lens, blank, lookahead=-1)


def test_candidate_tokens_with_proposals_scores_each_token_once():
    from unique_asr.decoding.ctc_prefix import candidate_tokens, joint_increment

    logp = torch.tensor([[0.0, -1.0, -2.0, -3.0, -9.0, -4.0]]).log_softmax(-1)  # eos = 4
    prop = torch.tensor([[2, 5, 5, 0, 3]])
    c = candidate_tokens(logp, eos=4, k=2, weight=0.5, n_labels=6, proposed=prop, filler=6)
    assert c.tolist() == [[0, 1, 2, 5, 6, 6, 3, 4]]
    # the filler (a blank past the decoder's 6 tokens, as a pretrained LLM's CTC has) scores -inf
    lp = torch.cat([logp, torch.zeros(1, 1)], 1).log_softmax(-1)  # 7 CTC classes, blank 6
    scorer = CTCPrefixScorer(lp[:, None].expand(1, 3, 7), torch.tensor([3]), blank=6, eos=4)
    st = scorer.initial()
    inc = joint_increment(logp, c, scorer.score(st, c), st, 0.5)
    assert torch.isinf(inc[0, 4:6]).all() and torch.isfinite(inc[0, :4]).all()


def test_weight_zero_is_the_decoder_alone(fake_model, copy_batch):
    emb, lens, targets = copy_batch
    assert greedy_search(fake_model, emb, lens, max_new=20, ctc=None)[0] == targets
    assert beam_search(fake_model, emb, lens, max_new=20, beam=2, ctc=None)[0] == targets
    with pytest.raises(ValueError, match="ctc_weight"):
        JointCTC(torch.zeros(1, 2, 3), torch.tensor([2]), 2, weight=0.0)


# ---------------------------------------------------------------- the runner, real tiny model
def test_runner_joint_ctc_per_piece_with_dense_and_sparse_attention(tmp_path, tiny_model,
                                                                    monkeypatch):
    """ctc_weight > 0 through decode_cuts: a recording split at pauses gives each piece its own
    CTC log-probs (lengths = the piece's encoder frames); greedy and beam run; a sparse cache
    whose budget covers the context gives the dense transcripts; weight 0 builds no scorer."""
    from decoding_helpers import WordTokenizer, make_cut
    from lhotse import CutSet

    from unique_asr.attention.api import SparseConfig
    from unique_asr.decoding import runner
    from unique_asr.decoding.config import DecodeConfig
    from unique_asr.decoding.runner import decode_cuts

    seen = []

    class SpyJointCTC(JointCTC):
        def __post_init__(self):
            seen.append((tuple(self.logp.shape), self.lens.tolist(), self.weight))
            super().__post_init__()

    monkeypatch.setattr(runner, "JointCTC", SpyJointCTC)
    cuts = CutSet.from_cuts([make_cut(tmp_path, "long", 6.0)])
    tok = WordTokenizer(40)
    base = {"max_tokens_per_second": 3.0, "min_new_tokens": 2, "max_segment_seconds": 2.5,
            "batch_size": 4}
    plain = decode_cuts(tiny_model, cuts, tok, DecodeConfig(**base, ctc_weight=0.0), "cpu")
    assert not seen  # weight 0: the decoder alone, no CTC scorer
    joint = decode_cuts(tiny_model, cuts, tok, DecodeConfig(**base, ctc_weight=0.5), "cpu")
    ((shape, lens, w),) = seen
    assert joint.rows[0]["pieces"] == plain.rows[0]["pieces"] == 3 and w == 0.5
    assert shape[0] == 3 and shape[2] == 41 and max(lens) == shape[1]
    up = tiny_model.ctc.upsample  # CTC frames per 40 ms encoder frame
    assert sum(lens) == pytest.approx(up * 600 / 4, abs=6 * up)  # 6 s, three pieces
    assert joint.notes["ctc_seconds"] > 0
    assert len(joint.rows[0]["hyp"].split()) == joint.rows[0]["tokens"]
    sparse = decode_cuts(tiny_model, cuts, tok, DecodeConfig(
        **base, ctc_weight=0.5, sparse=SparseConfig("unique", 4096)), "cpu")
    assert sparse.rows[0]["hyp"] == joint.rows[0]["hyp"]
    small = decode_cuts(tiny_model, cuts, tok, DecodeConfig(
        **base, ctc_weight=0.5, sparse=SparseConfig("unique", 16), method="beam", beam=2),
        "cpu")
    assert small.rows[0]["pieces"] == 3 and small.notes["ctc_seconds"] > 0
    with pytest.raises(ValueError, match="ctc_weight"):
        DecodeConfig(ctc_weight=1.5)
    assert DecodeConfig(method="ctc_greedy", ctc_weight=0.3).joint_ctc_weight == 0.0


def test_frame_window_gives_the_full_scores():
    """window=128 frames on a ~540-frame peaked posterior with a 300-frame pause (which must fall
    back to all frames): every live score equals the all-frames scorer's; dead ones stay dead."""
    g = torch.Generator().manual_seed(4)
    C, blank, eos = 6, 5, 9
    labels = torch.randint(0, 5, (60,), generator=g).tolist()
    frames = []
    for i, c in enumerate(labels):
        frames += [c] * int(torch.randint(1, 4, (1,), generator=g)) + [blank] * 2
        if i == 30:
            frames += [blank] * 300
    T = len(frames) + 50  # the first sequence ends in 50 blank frames, the second is padding
    frames += [blank] * 50
    logits = 1.5 * torch.randn(2, T, C, generator=g, dtype=torch.float64)
    logits[:, torch.arange(T), torch.tensor(frames)] += 10.0
    logp = logits.log_softmax(-1)
    logp[1, T - 50:] = 0.0  # padding (not log-probs at all): must not matter
    lens = torch.tensor([T, T - 50])
    full = CTCPrefixScorer(logp, lens, blank, eos)
    win = CTCPrefixScorer(logp, lens, blank, eos, window=128)
    sf, sw = full.initial(), win.initial()
    cands = torch.tensor([[0, 1, 2, 3, 4, eos]] * 2)
    for c in labels:
        a, b = full.score(sf, cands), win.score(sw, cands)
        live = a > sf.score[:, None] - 80
        torch.testing.assert_close(b[live], a[live], rtol=1e-9, atol=1e-9)
        assert bool((b[~live] < sf.score[:, None].expand_as(b)[~live] - 60).all())
        tok = torch.tensor([c, c])
        sf, sw = full.extend(sf, tok), win.extend(sw, tok)
        torch.testing.assert_close(sw.score, sf.score, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(win.end_score(sw), full.end_score(sf), rtol=1e-9, atol=1e-9)
    # the pause needed all frames; most of the 2 x 60 calls (score, extend) did not
    assert 0 < win.full_steps < len(labels), win.full_steps
