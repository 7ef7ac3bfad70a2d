"""Long-form plan: context arithmetic and cut placement at pauses."""

import itertools

import pytest
import torch

from unique_asr.decoding.config import DecodeConfig
from unique_asr.decoding.longform import (
    max_new_tokens,
    max_piece_frames,
    split_points,
)


def test_context_arithmetic():
    # 100 s = 1250 audio tokens of 8 frames; 8 tokens/s -> 800 + 16 transcript tokens
    assert max_new_tokens(1250, 8.0, 16, frames_per_token=8) == 816
    frames = max_piece_frames(65536, 8.0, 16, frames_per_token=8)
    tokens = frames // 8
    assert tokens + 1 + max_new_tokens(tokens, 8.0, 16, frames_per_token=8) <= 65536
    assert (tokens + 8) + 1 + max_new_tokens(tokens + 8, 8.0, 16, frames_per_token=8) > 65536
    assert max_piece_frames(65536, 8.0, 16, max_seconds=30, frames_per_token=8) == 3000
    # a pretrained LLM's text prompt takes its positions too
    frames = max_piece_frames(8192, 8.0, 16, frames_per_token=4, frame_seconds=0.02,
                              prompt_tokens=5)
    tokens = frames // 4
    new = max_new_tokens(tokens, 8.0, 16, frames_per_token=4, frame_seconds=0.02)
    assert tokens + 5 + new <= 8192 < (tokens + 4) + 5 + max_new_tokens(
        tokens + 4, 8.0, 16, frames_per_token=4, frame_seconds=0.02)
    with pytest.raises(ValueError, match="max_tokens_per_second"):
        max_piece_frames(30, 8.0, 16, frames_per_token=8)


def test_audio_token_geometry_follows_the_projector_stack(tmp_path):
    """model.stack sets the frames per audio token, and with it the shortest recording training
    keeps (one page of audio tokens) and the longest piece long-form decoding makes."""
    import sys
    from pathlib import Path

    from unique_asr.models import build_model
    from unique_asr.training.data import load_recordings

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
    from synth import make_cuts, tiny_model_cfg

    cuts = make_cuts(tmp_path, n_recs=1, n_sents=2, sentence_words=(1, 1))  # 103 frames
    kept = {}
    for stack in (2, 4):
        cfg = tiny_model_cfg(stack=stack)
        model = build_model(cfg)
        assert model.frames_per_token == 4 * stack
        assert model.audio_token_seconds == pytest.approx(0.04 * stack)
        feats = torch.zeros(1, 400, 80)
        with torch.inference_mode():
            _, alens = model.encode(feats, torch.tensor([400]))
        assert int(alens[0]) == model.audio_tokens(400)  # the formula is the model's own
        _, recs, stats = load_recordings(cuts, cfg)
        kept[stack] = (len(recs), stats.counts["too_short"])
        frames = max_piece_frames(4096, 8.0, 16, frames_per_token=model.frames_per_token)
        assert frames % model.frames_per_token == 0
        kept[stack] += (frames,)
    assert next(iter(cuts)).num_frames == 103  # 12 audio tokens at stack 2, 6 at stack 4:
    assert kept[2][:2] == (1, 0) and kept[4][:2] == (0, 1)  # one page (8) fits only the first
    assert kept[4][2] > kept[2][2]  # fewer context positions per second: longer pieces


def _loud_with_silences(T, silences):
    g = torch.Generator().manual_seed(1)
    f = torch.randn(T, 80, generator=g) + 5.0
    for s, e in silences:
        f[s:e] = -20.0
    return f


def test_short_recording_is_whole():
    f = _loud_with_silences(500, [])
    assert split_points(f, 500) == [(0, 500)]


def test_energy_cuts_land_in_silences():
    f = _loud_with_silences(2500, [(700, 760), (1400, 1460), (2100, 2160)])
    spans = split_points(f, 1000)
    assert spans[0][0] == 0 and spans[-1][1] == 2500
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # contiguous, no overlap
    assert all(e - s <= 1000 for s, e in spans)
    for _, cut in spans[:-1]:
        assert any(s <= cut < e for s, e in [(700, 760), (1400, 1460), (2100, 2160)]), spans


def test_supervision_gaps_preferred():
    f = _loud_with_silences(2000, [(900, 950)])  # quietest point at 9.0-9.5 s
    gaps = [(6.0, 6.4), (7.0, 8.0)]  # the longest gap in the span is 7-8 s -> cut at 7.5 s
    assert split_points(f, 1000, "supervisions", gaps)[0] == (0, 750)
    assert split_points(f, 1000, "energy", gaps)[0][1] in range(900, 950)
    with pytest.raises(ValueError, match="split_at"):
        split_points(f, 1000, "middle")


def test_bad_options_fail_early():
    from unique_asr.decoding.config import DecodeConfig

    with pytest.raises(ValueError, match="decode.method='sampling'"):
        DecodeConfig(method="sampling")
    with pytest.raises(ValueError, match="decode.split_at"):
        DecodeConfig(split_at="middle")


def test_token_limit_per_second_follows_the_tokenizer():
    """A pretrained LLM's tokens are coarser than char/BPE ids: its default limit is lower, so
    that a 4-minute recording still fits SmolLM2's 8K context whole."""
    opts = DecodeConfig()
    assert opts.tokens_per_second(pretrained_llm=False) == 30.0
    assert opts.tokens_per_second(pretrained_llm=True) == 8.0
    assert DecodeConfig(max_tokens_per_second=5.0).tokens_per_second(True) == 5.0
    frames = max_piece_frames(8192, opts.tokens_per_second(True), 16, frames_per_token=4,
                              frame_seconds=0.02, prompt_tokens=5)
    assert frames * 0.02 > 290  # the longest test recording of the synthetic corpus
    with pytest.raises(ValueError, match="max_tokens_per_second"):
        DecodeConfig(max_tokens_per_second=0.0)
