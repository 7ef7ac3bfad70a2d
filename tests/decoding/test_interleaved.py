"""The interleaved layout (model.interleave_s): its training packing, its greedy decoding against
a cache-free forward pass of the same sequence, sparse = dense when the budget covers the
context, and the chunk-wise CTC scorer against a scorer over the sliced log-probs."""

import pytest
import torch

from unique_asr.attention.api import SparseConfig
from unique_asr.decoding.ctc_prefix import CTCPrefixScorer
from unique_asr.decoding.generate import JointCTC
from unique_asr.decoding.interleaved import interleaved_greedy
from unique_asr.models import ModelConfig, build_model
from unique_asr.models.interleave import pack_interleaved, sentence_chunks


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(n_text=40)).eval()


def test_sentence_chunks_group_up_to_the_limit_and_meet_in_pauses():
    spans = [(0.5, 2.0), (2.4, 4.0), (4.6, 9.0), (9.4, 10.0)]
    got = sentence_chunks(spans, 4.0, 11.0)
    assert got == [(0, 2, 0.0, 4.3), (2, 3, 4.3, 9.2), (3, 4, 9.2, 11.0)]
    assert sentence_chunks([(0.0, 30.0)], 4.0, 31.0) == [(0, 1, 0.0, 31.0)]


def test_pack_interleaved_layout():
    """Two chunks: [a0 a1][P][w w][eos][a2 a3][P][w] with targets on the last prompt token and
    the words (next word, then eos)."""
    audio = torch.zeros(1, 4, 3)
    seg = {"row": torch.tensor([0, 0]), "start": torch.tensor([0.0, 0.5]),
           "end": torch.tensor([0.15, 0.65]), "tokens": torch.tensor([[7, 8], [9, 0]]),
           "token_lens": torch.tensor([2, 1])}
    src, tok, tgt, text = pack_interleaved(audio, torch.tensor([4]), seg, 0.2, 0.2, [5, 6], 1)
    assert src[0].tolist() == [0, 1, -1, -1, -1, -1, -1, 2, 3, -1, -1, -1]
    assert tok[0].tolist()[2:7] == [5, 6, 7, 8, 1] and tok[0].tolist()[9:] == [5, 6, 9]
    assert tgt[0].tolist() == [-100, -100, -100, 7, 8, 1, -100, -100, -100, -100, 9, 1]
    assert text[0].nonzero()[:, 0].tolist() == [4, 5, 11]


def test_speech_llm_trains_on_the_interleaved_layout():
    torch.manual_seed(0)
    m = build_model(ModelConfig(n_text=40, interleave_s=1.0, ctc_segments=True))
    feats = torch.randn(2, 300, 80)
    seg = {"row": torch.tensor([0, 0, 1]), "start": torch.tensor([0.2, 1.6, 0.3]),
           "end": torch.tensor([1.2, 2.6, 2.0]), "tokens": torch.randint(0, 40, (3, 4)),
           "token_lens": torch.tensor([4, 3, 2])}
    out = m(feats, torch.tensor([300, 250]), torch.randint(0, 40, (2, 7)), torch.tensor([7, 2]),
            ctc_segments=seg)
    assert out["ntokens"] == 4 + 3 + 2 + 3  # words + one eos per chunk (row 0 has two chunks)
    out["loss"].backward()
    assert m.projector.parameters().__next__().grad.abs().sum() > 0
    with pytest.raises(ValueError, match="ctc_segments"):
        m(feats, torch.tensor([300, 250]), torch.randint(0, 40, (2, 7)), torch.tensor([7, 2]))


def _sequence(model, audio, chunks, hyp_chunks):
    """The decoded sequence's inputs as one tensor: [audio][prompt][text][eos] per chunk."""
    with torch.inference_mode():
        emb, prompt = model.decoder.embed, model.decoder.embed(model.prompt_ids)
        parts, eos = [], emb(torch.tensor([model.eos_id]))
        for c, ((a0, a1), toks) in enumerate(zip(chunks, hyp_chunks)):
            if c:
                parts.append(eos)
            parts += [audio[a0:a1], prompt, emb(torch.tensor(toks, dtype=torch.long))]
        return torch.cat(parts)


def test_greedy_equals_a_cache_free_forward(model):
    """Every emitted token is the argmax of a plain causal pass over the whole sequence (audio,
    prompts, the tokens before it and the end tokens of earlier chunks)."""
    g = torch.Generator().manual_seed(3)
    audio = torch.randn(2, 50, model.cfg.llm.dim, generator=g) * 2
    lens = torch.tensor([50, 31])
    chunks = [[(0, 20), (20, 35), (35, 50)], [(0, 16), (16, 31)]]
    limits = [[3, 4, 2], [5, 3]]
    hyps, st = interleaved_greedy(model, audio, lens, chunks, limits)
    assert st.tokens == sum(map(len, hyps)) > 0
    for b in range(2):
        # split the transcript by chunk: each chunk ends at eos (not emitted) or at its limit;
        # re-run the forward pass chunk by chunk to find the boundaries
        done, pos_hyp = [], 0
        for c, (span, lim) in enumerate(zip(chunks[b], limits[b])):
            toks = []
            while len(toks) < lim:
                x = _sequence(model, audio[b], chunks[b][: c + 1], done + [toks])
                with torch.inference_mode():
                    h = model.decoder.hidden(x[None], torch.arange(len(x)))
                    logits = model.decoder.logits(h[0, -1]).float().clone()
                if model.suppress_ids:
                    logits = logits.index_fill(0, torch.tensor(model.suppress_ids), float("-inf"))
                t = int(logits.argmax())
                if t == model.eos_id:
                    break
                toks.append(t)
            done.append(toks)
            assert hyps[b][pos_hyp: pos_hyp + len(toks)] == toks
            pos_hyp += len(toks)
        assert pos_hyp == len(hyps[b])


def test_unique_with_budget_above_context_equals_dense(model):
    g = torch.Generator().manual_seed(4)
    audio = torch.randn(2, 60, model.cfg.llm.dim, generator=g) * 2
    lens = torch.tensor([60, 44])
    chunks = [[(0, 30), (30, 60)], [(0, 20), (20, 44)]]
    limits = [[6, 6], [6, 6]]
    dense, _ = interleaved_greedy(model, audio, lens, chunks, limits)
    uniq, _ = interleaved_greedy(model, audio, lens, chunks, limits, SparseConfig("unique", 1024))
    assert uniq == dense


def test_chunk_scorer_equals_a_scorer_over_the_sliced_log_probs():
    g = torch.Generator().manual_seed(5)
    logp = torch.randn(2, 30, 7, generator=g).log_softmax(-1)
    view = CTCPrefixScorer(logp, torch.tensor([10, 12]), 0, 6, rows=torch.tensor([1, 0]),
                           offsets=torch.tensor([15, 3]))
    a = CTCPrefixScorer(logp[1:2, 15:25], torch.tensor([10]), 0, 6)
    b = CTCPrefixScorer(logp[0:1, 3:15], torch.tensor([12]), 0, 6)
    sv = view.initial()
    sa, sb = a.initial(), b.initial()
    cands = torch.tensor([[1, 2, 3, 6]])
    for tok in (2, 2, 4):
        got = view.score(sv, cands.expand(2, -1))
        assert torch.allclose(got[0], a.score(sa, cands)[0])
        assert torch.allclose(got[1], b.score(sb, cands)[0])
        t = torch.tensor([tok])
        sv = view.extend(sv, t.expand(2))
        sa, sb = a.extend(sa, t), b.extend(sb, t)


def test_joint_ctc_decoding_runs_per_chunk(model):
    g = torch.Generator().manual_seed(6)
    audio = torch.randn(1, 40, model.cfg.llm.dim, generator=g) * 2
    logp = (torch.randn(1, 80, 41, generator=g) * 8).log_softmax(-1)  # peaky; 2 frames per token
    joint = JointCTC(logp, torch.tensor([80]), 40, weight=1.0, candidates=64)  # CTC alone picks
    hyps, _ = interleaved_greedy(model, audio, torch.tensor([40]), [[(0, 20), (20, 40)]],
                                 [[50, 50]], ctc=joint)
    # with weight 1 each chunk's transcript is its CTC best path (greedy over the chunk frames)
    want = []
    for f0, f1 in ((0, 40), (40, 80)):
        best = logp[0, f0:f1].argmax(-1).tolist()
        want += [t for i, t in enumerate(best) if t != 40 and (i == 0 or t != best[i - 1])]
    assert hyps[0] == want


def test_training_validation_decodes_whole_recordings_chunk_by_chunk(monkeypatch):
    """greedy_decode (the trainer's dev WER) of an interleaved model cuts each recording into
    chunks of at most interleave_s seconds that cover all its audio tokens."""
    import unique_asr.decoding.interleaved as interleaved
    from unique_asr.decoding.generate import greedy_decode

    torch.manual_seed(0)
    m = build_model(ModelConfig(n_text=40, interleave_s=1.0, ctc_segments=True)).eval()
    seen = {}
    real = interleaved.interleaved_greedy

    def spy(model, audio, lens, chunks, limits, *a, **k):
        seen.update(chunks=chunks, lens=lens.tolist(), limits=limits)
        return real(model, audio, lens, chunks, limits, *a, **k)

    monkeypatch.setattr(interleaved, "interleaved_greedy", spy)
    feats = torch.randn(1, 450, 80)
    feats[0, 140:160] -= 6  # pauses where the cuts go
    feats[0, 290:310] -= 6
    hyps = greedy_decode(m, feats, torch.tensor([450]), 30)
    spans, n = seen["chunks"][0], seen["lens"][0]
    assert len(spans) >= 3 and spans[0][0] == 0 and spans[-1][1] == n
    assert all(a1 == b0 for (_, a1), (b0, _) in zip(spans, spans[1:]))
    assert all(len(h) <= sum(seen["limits"][0]) for h in hyps)
