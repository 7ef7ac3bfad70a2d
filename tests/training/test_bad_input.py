"""Bad training input: unreadable files and NaN features raise naming the cut and file (or are
skipped and counted with skip_bad); empty transcripts and too-short recordings are skipped and
counted; other sample rates are resampled. Never a crash mid-epoch."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet, MonoCut, Recording, SupervisionSegment
from lhotse.utils import fastcopy
from synth import make_cuts, tiny_model_cfg

from unique_asr.data.features import BadInputError
from unique_asr.training.data import load_recordings

CFG = tiny_model_cfg()


@pytest.fixture
def cuts(tmp_path):
    return list(make_cuts(tmp_path / "d", n_recs=3, n_sents=3))


def test_unreadable_features_name_cut_and_path(cuts, tmp_path):
    broken = cuts[1]
    path = tmp_path / "d" / "feats"
    missing = fastcopy(broken, features=fastcopy(broken.features, storage_key="nope.npy"))
    bad = CutSet.from_cuts([cuts[0], missing, cuts[2]])
    with pytest.raises(BadInputError) as e:
        load_recordings(bad, CFG)
    assert broken.id in str(e.value) and str(path) in str(e.value) and "skip_bad" in str(e.value)
    _feats, recs, stats = load_recordings(bad, CFG, skip_bad=True)
    assert sorted(recs) == [cuts[0].id, cuts[2].id] and stats.counts["unreadable"] == 1


def test_unreadable_audio_names_cut_and_path(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    rec = Recording.from_file(wav)
    wav.write_bytes(b"not audio at all")
    cut = MonoCut("c1", 0, 1.0, 0, recording=rec,
                  supervisions=[SupervisionSegment("s", rec.id, 0, 1.0, text="ab")])
    with pytest.raises(BadInputError, match=r"cut c1: cannot read .*a\.wav"):
        load_recordings([cut], CFG)
    _, recs, stats = load_recordings([cut], CFG, skip_bad=True)
    assert not recs and stats.counts["unreadable"] == 1


def test_empty_transcripts_short_recordings_nan_features(cuts):
    c0 = cuts[0]
    sups = list(c0.supervisions)
    sups[1] = fastcopy(sups[1], text="  ")
    c0 = fastcopy(c0, supervisions=sups)
    short = fastcopy(cuts[1], id="short", duration=0.5)  # < one page of audio tokens
    short = fastcopy(short, features=fastcopy(short.features, num_frames=50, duration=0.5))
    nan_cut = cuts[2]
    arr = nan_cut.load_features()
    arr[5, 3] = np.nan
    np.save(nan_cut.features.storage_path + "/" + nan_cut.features.storage_key, arr)
    with pytest.raises(BadInputError, match=rf"cut {nan_cut.id}: 1 of .* NaN/inf .*skip_bad"):
        load_recordings([c0, short, nan_cut], CFG)
    _feats, recs, stats = load_recordings([c0, short, nan_cut], CFG, skip_bad=True)
    assert list(recs) == [c0.id]
    segs, _, breaks = recs[c0.id]
    assert len(segs) == 2 and breaks == frozenset({1})  # no window spans the untranscribed one
    assert stats.counts == {"empty_transcript": 1, "too_short": 1, "non_finite": 1}


def test_other_sample_rate_is_resampled(tmp_path):
    sr = 8000
    t = np.arange(3 * sr) / sr
    sf.write(tmp_path / "b.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    rec = Recording.from_file(tmp_path / "b.wav")
    cut = MonoCut("c8k", 0, 3.0, 0, recording=rec,
                  supervisions=[SupervisionSegment("s", rec.id, 0.5, 2.0, text="ab cd")])
    feats, _recs, stats = load_recordings([cut], CFG)
    assert stats.counts["resampled"] == 1
    f = feats["c8k"]
    assert abs(f.shape[0] - 300) <= 2 and f.shape[1] == 80  # 10 ms frames of 16 kHz audio
