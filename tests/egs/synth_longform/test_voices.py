"""The TTS engines behind synth_corpus.voices: each speaks at 16 kHz, trimmed; festival's batch
equals single calls; missing engines/voices name the Debian package and the command."""

from __future__ import annotations

import pytest
from synth_corpus import voices
from synth_corpus.voices import EngineMissing, Voice, check_voice, synthesize


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


def test_voice_settings_are_the_cache_key_fields():
    """The cache key fields are exactly a voice's settings; a config key a Voice does not have
    is an error, not silently ignored."""
    v = Voice.from_dict({"id": "b", "engine": "flite", "name": "awb", "rate": 0.9, "pitch": 120})
    assert v.settings() == {"id": "b", "engine": "flite", "name": "awb", "rate": 0.9,
                            "pitch": 120.0}
    with pytest.raises(ValueError, match="unknown key"):
        Voice.from_dict({"id": "c", "engine": "flite", "name": "awb", "speed": 3})


def test_festival_batch_equals_single_calls():
    """Stage 0 batches festival utterances per process; the audio must not depend on it."""
    import numpy as np
    from synth_corpus.voices import synthesize_many

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


def test_hibari_heart_speaks_at_corpus_rate_trimmed(monkeypatch, tmp_path):
    """The in-process hibari engine (24 kHz model) gives trimmed audio at the corpus rate, the same
    samples every time, and needs nothing from the network (an empty voice cache)."""
    pytest.importorskip("hibari", reason="hibari-tts not installed (pip install hibari-tts==0.2.1)")
    import numpy as np

    monkeypatch.setenv("HIBARI_HOME", str(tmp_path))
    voice = Voice("h", "hibari", "heart", 1.0)
    check_voice(voice)
    audio = synthesize(voice, "the old stone bridge", 16000)
    assert audio.dtype == np.float32 and 0.5 < len(audio) / 16000 < 3.0
    assert np.array_equal(audio, synthesize(voice, "the old stone bridge", 16000))
    fast = synthesize(Voice("h2", "hibari", "heart", 1.25), "the old stone bridge", 16000)
    assert len(fast) < 0.9 * len(audio)
    assert not list(tmp_path.iterdir())  # no voice was downloaded


def test_hibari_refuses_online_voices_and_pitch():
    pytest.importorskip("hibari", reason="hibari-tts not installed (pip install hibari-tts==0.2.1)")
    with pytest.raises(EngineMissing, match=r"'emma' is downloaded at run time"):
        check_voice(Voice("x", "hibari", "emma"))
    with pytest.raises(EngineMissing, match="no pitch"):
        check_voice(Voice("x", "hibari", "heart", 1.0, 120))


def test_hibari_missing_names_pypi_package(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_hibari(name, *args, **kwargs):
        if name == "hibari":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_hibari)
    with pytest.raises(EngineMissing, match=r"'hibari-tts' is not installed.*pip install "
                                            r"hibari-tts==0\.2\.1"):
        check_voice(Voice("x", "hibari", "heart"))


def test_hibari_only_for_training_voices():
    from synth_corpus.corpus import CorpusBuilder

    v = {"id": "hb", "engine": "hibari", "name": "heart"}
    cfg = {"seed": 1, "voices": {"train": [dict(v, id="a"), dict(v, id="b")],
                                 "test": [v, dict(v, id="c", rate=1.1)]}}
    with pytest.raises(ValueError, match=r"corpus.voices.test: engines \['hibari'\] are for "
                                         "training voices only"):
        CorpusBuilder(cfg, "/nonexistent")
