"""Alignment guide: coarse token times from sentence spans, the band loss, and its wiring."""

from __future__ import annotations

import random

import torch

from tests.models.test_model import small_cfg
from unique_asr.models import build_model
from unique_asr.models.align_guide import alignment_loss
from unique_asr.training.data import token_audio_index
from unique_asr.training.validate import valid_losses
from unique_asr.training.windows import Segment, recording_windows


def test_token_audio_index_spreads_characters_over_each_sentence():
    # "abcdefghij klmno": sentence 1 = 10 chars over 0-1.6 s, sentence 2 = 5 chars over 2.0-2.8 s
    a = token_audio_index([1] * 16, [(0.0, 1.6, 10), (2.0, 2.8, 5)])
    assert torch.allclose(a[:10], torch.arange(1.0, 20.0, 2.0))  # 2 audio tokens per char
    assert a[10] == 20.0  # the space: end of sentence 1
    assert torch.allclose(a[11:], torch.tensor([26.0, 28.0, 30.0, 32.0, 34.0]))
    # tokens of several characters: centres on the same time line; no spans: unknown
    b = token_audio_index([2] * 5, [(0.0, 0.8, 10)])
    assert torch.allclose(b, torch.tensor([1.0, 3.0, 5.0, 7.0, 9.0]))
    assert (token_audio_index([1, 1], None) == -1).all()


def test_window_spans_match_its_sentences():
    r = random.Random(0)
    segs, t = [], 0.3
    for i in range(12):
        d = r.uniform(1, 3)
        segs.append(Segment(t, t + d, "x" * (3 + i)))
        t += d + 0.5
    for w in recording_windows("r", segs, t, 8.0, 1.0, 0.0, random.Random(2)):
        assert sum(n for _, _, n in w.spans) + len(w.spans) - 1 == len(w.text)
        for (s, e, _n), seg in zip(w.spans, [s for s in segs if w.start <= s.start < w.end]):
            assert abs(s - (seg.start - w.start)) < 1e-3 and abs(e - (seg.end - w.start)) < 1e-3


def test_alignment_loss_is_low_on_the_band_and_guides_only_the_first_head():
    torch.manual_seed(0)
    B, H, L, D = 1, 4, 30, 32
    audio_lens, token_lens = torch.tensor([20]), torch.tensor([6])
    align = torch.tensor([[2.0, 5.0, 8.0, 11.0, 14.0, 17.0]])
    k = torch.zeros(B, 1, L, D)
    k[0, 0, torch.arange(20), torch.arange(20) % D] = 1.0  # audio keys: one-hot codes
    q = torch.zeros(B, H, L, D)
    for u, a in enumerate(align[0].long()):
        q[0, :, 20 + u, int(a) % D] = 100.0  # the query predicting token u points at its audio
    loss, n = alignment_loss(q, k, audio_lens, token_lens, align, 1.0, 1, 8)
    assert int(n) == 6 and float(loss) < 1e-3
    q2 = torch.randn(B, H, L, D, requires_grad=True)
    loss2, _ = alignment_loss(q2, k, audio_lens, token_lens, align, 1.0, 1, 8)
    assert float(loss2) > 0.5
    loss2.backward()
    assert q2.grad[:, 0].abs().sum() > 0 and q2.grad[:, 1:].abs().sum() == 0


def test_speech_llm_adds_the_guide_only_when_the_decoder_trains():
    torch.manual_seed(0)
    feats, flens = torch.randn(2, 300, 80), torch.tensor([300, 220])
    toks, tlens = torch.randint(0, 30, (2, 9)), torch.tensor([9, 7])
    align = torch.linspace(0, 8, 9).repeat(2, 1)
    m0 = build_model(small_cfg()).train()
    m1 = build_model(small_cfg(align_weight=0.5))
    m1.load_state_dict(m0.state_dict())
    m1.train()
    torch.manual_seed(1)
    o0 = m0(feats, flens, toks, tlens, align=align)
    torch.manual_seed(1)
    o1 = m1(feats, flens, toks, tlens, align=align)
    assert float(o0["align_sum"]) == 0.0 and float(o1["align_sum"]) > 0
    assert torch.allclose(o1["ce_sum"], o0["ce_sum"]) and torch.allclose(o1["ctc_sum"], o0["ctc_sum"])
    assert torch.allclose(o1["loss_sum"], o0["loss_sum"] + 0.5 * o1["align_sum"])
    torch.manual_seed(1)
    warm = m1(feats, flens, toks, tlens, ce_weight=0.0, align=align)  # CTC warm-up: no guide
    assert float(warm["align_sum"]) == 0.0
    assert all(not layer.attn.capture and layer.attn.captured is None for layer in m1.decoder.layers)


def test_valid_losses_reports_ce_with_other_audio():
    torch.manual_seed(0)
    m = build_model(small_cfg())
    b = {"feats": torch.randn(3, 200, 80), "feat_lens": torch.tensor([200, 180, 150]),
         "tokens": torch.randint(0, 30, (3, 6)), "token_lens": torch.tensor([6, 5, 4])}
    from contextlib import nullcontext

    v = valid_losses(m, [b], "cpu", nullcontext, shuffled=True)
    assert set(v) == {"loss", "ce", "ce_other_audio"} and v["ce"] != v["ce_other_audio"]
    assert valid_losses(m, [b], "cpu", nullcontext)["loss"] == v["loss"]


def test_window_batcher_gives_token_times_only_when_asked():
    from tests.training.synth import CharTokenizer
    from unique_asr.training.data import WindowBatcher, windows_to_cuts

    segs = [Segment(0.5, 1.7, "ab cd"), Segment(2.3, 3.1, "efg")]
    ws = recording_windows("r", segs, 3.6, 10.0, 1.0, 0.0, random.Random(0))
    cuts = list(windows_to_cuts(ws))
    feats = {"r": torch.randn(360, 80)}
    plain = WindowBatcher(feats, CharTokenizer())(cuts)
    assert "align" not in plain
    b = WindowBatcher(feats, CharTokenizer(), with_align=True)(cuts)
    a = b["align"][0, : int(b["token_lens"][0])]
    w = ws[0]
    assert len(ws) == 1 and torch.all(a[1:] >= a[:-1])  # monotone in time
    assert a[0] >= (0.5 - w.start) / 0.08 - 1e-4 and a[-1] <= (3.1 - w.start) / 0.08 + 1e-4
