"""data.model_audio: stage 2 (compute_fbank) and the on-the-fly features of a user's file
(user_inputs -> load_features) hear any rate and channel count the same way, bit for bit, for
fbank and for Whisper's log-mel."""

import numpy as np
import pytest
import soundfile as sf
import torch

from unique_asr.data.fbank import compute_fbank
from unique_asr.data.features import load_features
from unique_asr.data.model_audio import to_model_audio
from unique_asr.data.user_inputs import resolve_inputs

# (name, sample rate, channels)
FILES = [("a.wav", 8000, 1), ("b.flac", 16000, 2), ("c.flac", 22050, 1), ("d.wav", 44100, 2),
         ("e.ogg", 44100, 1)]


def _write(root, seconds=1.3):
    audio = root / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for name, sr, ch in FILES:
        x = 0.2 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * sr)) / sr)[:, None]
        x = x + 0.05 * rng.standard_normal((len(x), ch))
        sf.write(audio / name, x.astype("float32"), sr)
    return audio


def _stage2(root, audio, extractor=None, width=80):
    from lhotse import CutSet, RecordingSet, SupervisionSet

    m = root / "manifests"
    m.mkdir()
    inputs = resolve_inputs([str(audio)])
    RecordingSet.from_recordings(c.recording for c in inputs.cuts).to_file(
        m / "recordings_test.jsonl.gz")
    SupervisionSet.from_segments([]).to_file(m / "supervisions_test.jsonl.gz")
    compute_fbank(m, root / "feats", ["test"], num_mel_bins=width, num_jobs=1,
                  extractor=extractor)
    stored = {c.recording_id: c for c in CutSet.from_file(root / "feats" / "cuts_test.jsonl.gz")}
    return inputs.cuts, stored


def test_fbank_of_stage_2_equals_on_the_fly(tmp_path):
    cuts, stored = _stage2(tmp_path, _write(tmp_path))
    assert len(cuts) == len(FILES)
    for cut in cuts:
        want = load_features(stored[cut.id])
        got = load_features(cut)
        assert torch.equal(got, want), cut.id
        assert got.shape == (130, 80)
    # the features differ between files (a test that compared nothing would pass too)
    assert not torch.equal(load_features(cuts[0]), load_features(cuts[1]))


def test_whisper_log_mel_of_stage_2_equals_on_the_fly(tmp_path):
    from unique_asr.models.whisper_features import WhisperFeatures, WhisperFeaturesConfig

    ex = WhisperFeatures(WhisperFeaturesConfig(cached=False))
    cuts, stored = _stage2(tmp_path, _write(tmp_path), ex)
    for cut in cuts:
        got = load_features(cut, 80, extractor=ex)
        assert torch.equal(got, load_features(stored[cut.id])), cut.id


def test_mono_mix_and_resampling():
    x = np.stack([np.ones(44100, np.float32), np.zeros(44100, np.float32)])
    y = to_model_audio(x, 44100, 16000)
    assert y.shape == (1, 16000) and y.dtype == np.float32
    assert y[0, 100:-100] == pytest.approx(0.5, abs=1e-3)  # the mean of the channels
    same = np.arange(8, dtype=np.float32)
    assert np.array_equal(to_model_audio(same, 16000, 16000), same[None])
