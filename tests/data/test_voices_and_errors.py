"""Clear answers to bad input: missing engines/voices name the Debian package and the command;
missing or empty corpus directories name the path."""

from __future__ import annotations

import pytest

from unique_asr.data import voices
from unique_asr.data.manifests import build_manifests
from unique_asr.data.voices import EngineMissing, Voice, check_voice, synthesize


def test_missing_engine_names_package(monkeypatch):
    monkeypatch.setattr(voices.shutil, "which", lambda name: None)
    with pytest.raises(EngineMissing, match=r"apt-get install -y espeak-ng"):
        check_voice(Voice("x", "espeak-ng", "en-us"))
    with pytest.raises(EngineMissing, match=r"'festival'.*apt-get install -y festival"):
        check_voice(Voice("y", "festival", "kal_diphone"))


def test_missing_voices_name_package():
    with pytest.raises(EngineMissing, match=r"festvox-kallpc16k|festvox-<voice>"):
        check_voice(Voice("x", "festival", "no_such_diphone"))
    with pytest.raises(EngineMissing, match=r"flite voice 'nobody'.*apt-get install -y flite"):
        check_voice(Voice("x", "flite", "nobody"))
    with pytest.raises(EngineMissing, match=r"espeak-ng voice 'xx-nowhere'"):
        check_voice(Voice("x", "espeak-ng", "xx-nowhere"))


@pytest.mark.parametrize("engine, name", [("espeak-ng", "en-us+m1"), ("flite", "slt"),
                                          ("festival", "kal_diphone")])
def test_engines_speak_at_16k_trimmed(engine, name):
    import numpy as np

    audio = synthesize(Voice("t", engine, name), "the old stone bridge", 16000)
    assert audio.dtype == np.float32 and 0.5 < len(audio) / 16000 < 3.0
    n = len(audio) // 160
    frames = (audio[: n * 160].reshape(n, 160).astype(np.float64) ** 2).mean(1)
    # speech (within 40 dB of the loudest frame) starts and ends within 30 ms of the edges
    assert frames[:3].max() > frames.max() * 1e-4 and frames[-3:].max() > frames.max() * 1e-4


def test_voice_shift_scales_frequencies_and_duration():
    """Voice.shift: a 200 Hz tone comes out at 200 * shift Hz and 1 / shift as long; shift 1
    leaves cache keys as they were before the field existed."""
    import numpy as np

    from unique_asr.data.voices import _to_corpus_audio

    t = np.arange(32000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    out = _to_corpus_audio(Voice("f", "flite", "awb", shift=1.25), tone, 16000, 16000)
    assert abs(len(out) - 32000 / 1.25) < 400                           # trim pads 10 ms
    spec = np.abs(np.fft.rfft(out[1000:-1000]))
    peak = np.fft.rfftfreq(len(out) - 2000, 1 / 16000)[spec.argmax()]
    assert abs(peak - 250) < 3
    assert "shift" not in Voice("a", "flite", "awb").settings()
    assert Voice.from_dict({"id": "b", "engine": "flite", "name": "awb", "shift": 1.2}).settings()["shift"] == 1.2
    with pytest.raises(ValueError, match="shift"):
        Voice.from_dict({"id": "c", "engine": "flite", "name": "awb", "shift": 3})


def test_missing_or_empty_corpus_dir(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build_manifests(missing, tmp_path / "m", ["train"])
    (tmp_path / "corpus" / "train" / "audio").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no audio .*corpus/train/audio"):
        build_manifests(tmp_path / "corpus", tmp_path / "m", ["train"])


def test_festival_batch_equals_single_calls():
    """Stage 0 batches festival utterances per process; the audio must not depend on it."""
    import numpy as np

    from unique_asr.data.voices import synthesize_many

    voice = Voice("t", "festival", "kal_diphone")
    texts = ["the old stone bridge", "why is it that we rejoice"]
    for single, batched in zip([synthesize(voice, t) for t in texts],
                               synthesize_many(voice, texts)):
        assert np.array_equal(single, batched)


def test_festival_voice_dirs_from_env(monkeypatch, tmp_path):
    """A festival outside /usr (the GPU machine's TTS bundle) names its voice dirs in
    $UNIQUE_ASR_FESTIVAL_VOICE_DIRS; unset, the Debian dirs are used as before."""
    monkeypatch.delenv(voices.FESTIVAL_VOICE_DIRS_ENV, raising=False)
    assert voices.festival_voice_dirs() == voices.FESTIVAL_VOICE_DIRS
    (tmp_path / "b" / "english" / "my_diphone").mkdir(parents=True)
    monkeypatch.setenv(voices.FESTIVAL_VOICE_DIRS_ENV, f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert voices.festival_voice_dirs() == (str(tmp_path / "a"), str(tmp_path / "b"))
    check_voice(Voice("x", "festival", "my_diphone"))  # found under the second dir
    with pytest.raises(EngineMissing, match=r"kal_diphone' not found under .*/a, .*/b"):
        check_voice(Voice("y", "festival", "kal_diphone"))  # the Debian dirs are not searched
