"""Decoding with the real (randomly initialised) tiny model: batching, long-form, bad input."""

import pytest
import torch
from decoding_helpers import WordTokenizer, make_cut
from lhotse import CutSet

from unique_asr.attention.api import METHODS, SparseConfig
from unique_asr.data.features import BadInputError, load_features
from unique_asr.decoding.config import DecodeConfig
from unique_asr.decoding.generate import beam_search, greedy_search
from unique_asr.decoding.runner import AudioInput, decode_cuts

# few tokens per second keeps a random model (which rarely says eos) to a few steps
FAST = {"max_tokens_per_second": 2.0, "min_new_tokens": 2, "ctc_weight": 0.0}


def test_real_model_batch_equals_single(tiny_model):
    g = torch.Generator().manual_seed(2)
    feats, lens = torch.randn(3, 400, 80, generator=g), torch.tensor([400, 250, 72])
    with torch.inference_mode():
        audio, alens = tiny_model.encode(feats, lens)
    assert alens.tolist() == [49, 30, 8]
    hyps, stats = greedy_search(tiny_model, audio, alens, 6)
    assert stats.steps <= 6 and all(len(h) <= 6 for h in hyps)
    for b in range(3):  # padding in a batch changes nothing
        single, _ = greedy_search(tiny_model, audio[b : b + 1, : alens[b]], alens[b : b + 1], 6)
        assert single[0] == hyps[b]
    assert beam_search(tiny_model, audio, alens, 6, beam=1)[0] == hyps
    beam, _ = beam_search(tiny_model, audio, alens, 6, beam=3)
    assert len(beam) == 3 and all(len(h) <= 6 for h in beam)


def test_decode_cuts_whole_recordings(tmp_path, tiny_model):
    cuts = CutSet.from_cuts([
        make_cut(tmp_path, "b", 3.0, texts=("hello there", "general kenobi")),
        make_cut(tmp_path, "a", 5.0),
        make_cut(tmp_path, "short", 0.3, texts=("hi",)),  # under one page of audio tokens
    ])
    res = decode_cuts(tiny_model, cuts, WordTokenizer(40), DecodeConfig(**FAST), "cpu")
    assert [r["id"] for r in res.rows] == ["a", "b", "short"]
    assert res.rows[1]["ref"] == "hello there general kenobi"  # supervisions in time order
    assert [t[1] for t in res.rows[1]["ref_turns"]] == ["hello there", "general kenobi"]
    assert all(r["pieces"] == 1 for r in res.rows)  # whole recordings
    assert res.notes["padded_short"] == 1 and not res.skipped
    for r in res.rows:
        words = r["hyp"].split()
        assert len(words) == r["tokens"] and all(w.startswith("w") for w in words)
        assert r["tokens"] <= 2 * max(r["duration"], 0.72) + 2 + 1  # short: padded to 0.72 s
    assert res.speed.audio_seconds == pytest.approx(8.3, abs=0.01)
    assert res.speed.tokens == sum(r["tokens"] for r in res.rows)
    assert res.speed.rtfx > 0 and res.speed.wall_seconds >= res.speed.step_seconds


def test_long_recording_split_and_joined(tmp_path, tiny_model):
    cuts = CutSet.from_cuts([make_cut(tmp_path, "long", 6.0)])
    opts = DecodeConfig(**FAST, max_segment_seconds=2.5, batch_size=2)
    res = decode_cuts(tiny_model, cuts, WordTokenizer(40), opts, "cpu")
    (row,) = res.rows
    assert row["pieces"] == 3 and res.notes["split_recordings"] == 1
    assert len(row["hyp"].split()) == row["tokens"] > 0
    beam = decode_cuts(tiny_model, cuts, WordTokenizer(40),
                       DecodeConfig(**FAST, max_segment_seconds=2.5, method="beam", beam=2),
                       "cpu")
    assert beam.rows[0]["pieces"] == 3


def test_ctc_methods_keep_a_recording_whole_past_the_decoder_context(tmp_path, tiny_model):
    """The decoder's context forces pieces on the LLM methods; the CTC head has no context to fit,
    so a recording stays whole (no split, no token-limit note) unless max_segment_seconds asks."""
    cuts = CutSet.from_cuts([make_cut(tmp_path, "long", 6.0)])
    tight = {"max_tokens_per_second": 2.0, "min_new_tokens": 2}
    saved = tiny_model.cfg.llm.max_positions
    tiny_model.cfg.llm.max_positions = 60  # room for ~3.9 s of audio + transcript per piece
    try:
        llm = decode_cuts(tiny_model, cuts, WordTokenizer(40), DecodeConfig(**tight), "cpu")
        ctc = decode_cuts(tiny_model, cuts, WordTokenizer(40),
                          DecodeConfig(**tight, method="ctc_greedy"), "cpu")
        asked = decode_cuts(tiny_model, cuts, WordTokenizer(40),
                            DecodeConfig(**tight, method="ctc_greedy", max_segment_seconds=2.5),
                            "cpu")
    finally:
        tiny_model.cfg.llm.max_positions = saved
    assert llm.rows[0]["pieces"] > 1 and llm.notes["split_recordings"] == 1
    assert ctc.rows[0]["pieces"] == 1 and not ctc.notes["split_recordings"]
    assert not ctc.notes["pieces_hit_token_limit"] and ctc.rows[0]["tokens"] > 2 * 6 + 2
    assert asked.rows[0]["pieces"] == 3


def test_bad_audio_named_or_skipped(tmp_path, tiny_model):
    good, bad = make_cut(tmp_path, "good", 2.0), make_cut(tmp_path, "bad", 2.0)
    (tmp_path / "bad.wav").unlink()
    cuts = CutSet.from_cuts([good, bad])
    with pytest.raises(BadInputError, match=r"cut bad: audio file .*bad\.wav is missing"):
        decode_cuts(tiny_model, cuts, WordTokenizer(40), DecodeConfig(**FAST), "cpu")
    res = decode_cuts(tiny_model, cuts, WordTokenizer(40),
                      DecodeConfig(**FAST), "cpu", audio=AudioInput(skip_bad=True))
    assert [r["id"] for r in res.rows] == ["good"]
    assert len(res.skipped) == 1 and res.skipped[0]["id"] == "bad"
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    junk = make_cut(tmp_path, "junk", 1.0)
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(BadInputError, match=r"cut junk: cannot read audio .*junk\.wav"):
        decode_cuts(tiny_model, CutSet.from_cuts([junk]), WordTokenizer(40),
                    DecodeConfig(**FAST), "cpu")


def test_other_sample_rate_resampled(tmp_path, tiny_model):
    cuts = CutSet.from_cuts([make_cut(tmp_path, "r8k", 2.0, sr=8000)])
    res = decode_cuts(tiny_model, cuts, WordTokenizer(40), DecodeConfig(**FAST), "cpu")
    assert res.notes["resampled"] == 1 and len(res.rows) == 1


def _with_stored_features(tmp_path, rec_id, seconds):
    from lhotse import Fbank, FbankConfig, NumpyFilesWriter

    cut = make_cut(tmp_path, rec_id, seconds)
    with NumpyFilesWriter(tmp_path / "feats") as w:
        cut = cut.compute_and_store_features(Fbank(FbankConfig(num_mel_bins=80)), w)
    return cut, tmp_path / "feats" / cut.features.storage_key


def test_stored_features_nan_and_missing(tmp_path, tiny_model):
    import numpy as np

    cut, path = _with_stored_features(tmp_path, "nanrec", 2.0)
    f = np.load(path)
    f[10:15] = np.nan
    np.save(path, f)
    with pytest.raises(BadInputError, match=rf"cut nanrec: 5 of .* NaN/inf .*{path.name}"):
        decode_cuts(tiny_model, CutSet.from_cuts([cut]), WordTokenizer(40),
                    DecodeConfig(**FAST), "cpu")
    res = decode_cuts(tiny_model, CutSet.from_cuts([cut]), WordTokenizer(40),
                      DecodeConfig(**FAST), "cpu", audio=AudioInput(skip_bad=True))
    assert not res.rows and res.skipped[0]["id"] == "nanrec"
    path.unlink()
    with pytest.raises(BadInputError, match=rf"cut nanrec: cannot read its features .*{path.name}"):
        decode_cuts(tiny_model, CutSet.from_cuts([cut]), WordTokenizer(40),
                    DecodeConfig(**FAST), "cpu")


@pytest.mark.parametrize("attention", [m for m in METHODS if m != "dense"])
def test_sparse_backends_through_the_loop(tiny_model, attention):
    """Budget >= context: the sparse caches attend densely, so greedy output equals dense.
    A small budget (2 pages of ~7) runs the top-k path for every step."""
    g = torch.Generator().manual_seed(3)
    feats, lens = torch.randn(2, 400, 80, generator=g), torch.tensor([400, 300])
    with torch.inference_mode():
        audio, alens = tiny_model.encode(feats, lens)
    dense, _ = greedy_search(tiny_model, audio, alens, 6)
    wide, _ = greedy_search(tiny_model, audio, alens, 6, SparseConfig(attention, 4096))
    assert wide == dense
    hyps, stats = greedy_search(tiny_model, audio, alens, 6, SparseConfig(attention, 16))
    assert len(hyps) == 2 and stats.steps >= 1 and all(len(h) <= 6 for h in hyps)
    beam, _ = beam_search(tiny_model, audio, alens, 4, beam=2,
                          sparse=SparseConfig(attention, 16))
    assert len(beam) == 2


def test_ctc_greedy_method_decodes_the_encoder_alone(tmp_path, tiny_model):
    from unique_asr.models.ctc import ctc_greedy

    cut = make_cut(tmp_path, "c", 4.0)
    res = decode_cuts(tiny_model, CutSet.from_cuts([cut]), WordTokenizer(40),
                      DecodeConfig(method="ctc_greedy"), "cpu")
    feats = load_features(cut)
    with torch.inference_mode():
        _, _, logp, enc_lens = tiny_model.encode_with_ctc(feats[None], torch.tensor([len(feats)]))
    ids = ctc_greedy(logp, enc_lens, tiny_model.cfg.ctc_blank)[0]
    assert res.rows[0]["hyp"] == WordTokenizer(40).decode(ids)
    assert res.rows[0]["tokens"] == len(ids) == res.speed.tokens
    assert all(i != tiny_model.cfg.ctc_blank for i in ids)
    with pytest.raises(ValueError, match="ctc_greedy"):
        DecodeConfig(method="ctc")


def test_ctc_beam_method_searches_the_ctc_head_with_the_lm(tmp_path, tiny_model):
    from unique_asr.decoding.ctc_beam import ctc_prefix_beam_search
    from unique_asr.decoding.ngram_lm import TokenNgramLM

    cut = make_cut(tmp_path, "c", 4.0)
    lm = TokenNgramLM([[1, 2, 3, 4] * 20], vocab=40, order=3)
    opts = DecodeConfig(method="ctc_beam", beam=6, lm_weight=0.5, token_bonus=0.2, ctc_weight=0.9)
    assert opts.joint_ctc_weight == 0.0                                # the decoder never runs
    res = decode_cuts(tiny_model, CutSet.from_cuts([cut]), WordTokenizer(40), opts, "cpu", lm)
    feats = load_features(cut)
    with torch.inference_mode():
        _, _, logp, enc_lens = tiny_model.encode_with_ctc(feats[None], torch.tensor([len(feats)]))
    ids = ctc_prefix_beam_search(logp[0, :int(enc_lens[0])].numpy(), tiny_model.cfg.ctc_blank,
                                 6, lm, 0.5, 0.2)
    assert res.rows[0]["hyp"] == WordTokenizer(40).decode(ids)
    assert res.rows[0]["tokens"] == len(ids) == res.speed.tokens
    with pytest.raises(ValueError, match="lm_weight"):
        DecodeConfig(method="ctc_beam", lm_weight=-1)
