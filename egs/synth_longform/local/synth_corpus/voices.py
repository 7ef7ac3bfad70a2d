"""Offline TTS engines (espeak-ng, flite, festival, hibari) behind one `synthesize(voice, text)`
call.

A pseudo-speaker is a `Voice`: engine + voice name + rate/pitch settings. The Debian engines run
as a subprocess writing a WAV into a private temp dir; hibari (a PyPI package, training voices
only) runs in-process (hibari_engine.py). The result is returned as float32 mono at the corpus
rate, with leading and trailing silence trimmed so that supervision times are the speech itself.
Missing engines or voices raise `EngineMissing`, naming the package and the install command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from . import hibari_engine

ENGINE_PACKAGES = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "festival",
                   "hibari": hibari_engine.PACKAGE}
# one voice only (heart): dev and test keep the default voices, so scores stay comparable
TRAIN_ONLY_ENGINES = frozenset({"hibari"})
FESTIVAL_VOICE_PACKAGES = {
    "kal_diphone": "festvox-kallpc16k",
    "ked_diphone": "festvox-kdlpc16k",
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
}
FESTIVAL_VOICE_DIRS = ("/usr/share/festival/voices", "/usr/lib/festival/voices")
# A festival unpacked outside /usr (the GPU machine's TTS bundle, tools/gpu/unpack_tts.sh) keeps
# its voices elsewhere: this variable, a ':'-separated list, then replaces the two dirs above.
FESTIVAL_VOICE_DIRS_ENV = "UNIQUE_ASR_FESTIVAL_VOICE_DIRS"


class EngineMissing(RuntimeError):
    """A synthesis engine or voice is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Voice:
    """One pseudo-speaker. `rate` is a speed factor (1.0 = engine default), `pitch` in 0..99
    (espeak-ng) or a mean F0 in Hz (flite; festival ignores it: 0 keeps the voice's own;
    hibari has none and refuses it)."""

    id: str
    engine: str
    name: str
    rate: float = 1.0
    pitch: float = 0.0

    @staticmethod
    def from_dict(d: dict) -> Voice:
        unknown = sorted(set(d) - {"id", "engine", "name", "rate", "pitch"})
        if unknown:
            raise ValueError(f"voice {d.get('id')}: unknown key(s) {unknown}; a voice has id, "
                             "engine, name, rate, pitch")
        return Voice(id=str(d["id"]), engine=str(d["engine"]), name=str(d["name"]),
                     rate=float(d.get("rate", 1.0)), pitch=float(d.get("pitch", 0.0)))

    def settings(self) -> dict:
        """The fields that decide the audio (the synthesis cache's keys)."""
        return dict(self.__dict__)


def festival_voice_dirs() -> tuple[str, ...]:
    """Where check_voice looks for festival voices: $UNIQUE_ASR_FESTIVAL_VOICE_DIRS when set
    (':'-separated), else the Debian locations."""
    env = os.environ.get(FESTIVAL_VOICE_DIRS_ENV, "")
    dirs = tuple(d for d in env.split(":") if d)
    return dirs or FESTIVAL_VOICE_DIRS


def _install_hint(package: str) -> str:
    return f"install it with: sudo apt-get install -y {package} (or run local/setup_env.sh as root)"


def check_voice(voice: Voice) -> None:
    """Raise EngineMissing unless the engine binary and the voice are available."""
    if voice.engine == "hibari":
        why = hibari_engine.problem(voice.name, voice.pitch, voice.rate)
        if why:
            raise EngineMissing(f"voice {voice.id}: {why}")
        return
    binary = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "festival"}.get(voice.engine)
    if binary is None:
        raise ValueError(f"voice {voice.id}: unknown engine {voice.engine!r} "
                         f"(known: {', '.join(ENGINE_PACKAGES)})")
    if shutil.which(binary) is None:
        pkg = ENGINE_PACKAGES[voice.engine]
        raise EngineMissing(f"voice {voice.id}: engine '{binary}' not found; Debian package "
                            f"'{pkg}'; {_install_hint(pkg)}")
    if voice.engine == "flite":
        out = subprocess.run(["flite", "-lv"], check=False, capture_output=True, text=True).stdout
        if voice.name not in out.split():
            raise EngineMissing(f"voice {voice.id}: flite voice '{voice.name}' not built in "
                                f"(flite -lv: {out.strip()}); Debian package 'flite'; "
                                f"{_install_hint('flite')}")
    elif voice.engine == "festival":
        dirs = festival_voice_dirs()
        if not any(list(Path(d).glob(f"*/{voice.name}")) for d in dirs):
            pkg = FESTIVAL_VOICE_PACKAGES.get(voice.name, "festvox-<voice>")
            raise EngineMissing(f"voice {voice.id}: festival voice '{voice.name}' not found "
                                f"under {', '.join(dirs)} (${FESTIVAL_VOICE_DIRS_ENV} "
                                f"overrides these); Debian package "
                                f"'{pkg}'; {_install_hint(pkg)}")
    elif voice.engine == "espeak-ng":
        r = subprocess.run(["espeak-ng", "-v", voice.name, "-q", "test"], check=False, capture_output=True,
                           text=True)
        if r.returncode != 0 or "not found" in (r.stderr + r.stdout).lower():
            raise EngineMissing(f"voice {voice.id}: espeak-ng voice '{voice.name}' not found "
                                f"({r.stderr.strip()}); Debian package 'espeak-ng-data'; "
                                f"{_install_hint('espeak-ng espeak-ng-data')}")


def _engine_command(voice: Voice, text: str, wav: Path, workdir: Path) -> list[str]:
    if voice.engine == "espeak-ng":
        wpm = round(170 * voice.rate)
        cmd = ["espeak-ng", "-v", voice.name, "-s", str(wpm), "-w", str(wav)]
        if voice.pitch:
            cmd += ["-p", str(int(voice.pitch))]
        return cmd + [text]
    if voice.engine == "flite":
        cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={1.0 / voice.rate:.4f}"]
        if voice.pitch:
            cmd += ["--setf", f"int_f0_target_mean={voice.pitch:.1f}"]
        return cmd + ["-t", text, "-o", str(wav)]
    if voice.engine == "festival":
        return _festival_command(voice, [(text, wav)], workdir)
    raise ValueError(f"unknown engine {voice.engine!r}")


def _festival_command(voice: Voice, jobs: list[tuple[str, Path]], workdir: Path) -> list[str]:
    """One festival process for many utterances: loading the voice costs more than speaking."""
    script = workdir / "synth.scm"
    lines = [f"(voice_{voice.name})", f"(Parameter.set 'Duration_Stretch {1.0 / voice.rate:.4f})"]
    for text, wav in jobs:
        lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{wav}" \'riff)')
    script.write_text("\n".join(lines) + "\n")
    return ["festival", "-b", str(script)]


def resample(audio: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's polyphase sinc), float32 in and out."""
    if src_rate == dst_rate:
        return audio.astype(np.float32, copy=False)
    import torch
    import torchaudio.functional as AF

    wave = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    return AF.resample(wave, src_rate, dst_rate).numpy()


def trim_silence(audio: np.ndarray, rate: int, threshold_db: float = -40.0,
                 pad_s: float = 0.01) -> np.ndarray:
    """Cut leading/trailing frames (10 ms) quieter than threshold_db below the peak frame."""
    hop = rate // 100
    n = len(audio) // hop
    if n == 0:
        return audio
    frames = audio[: n * hop].reshape(n, hop).astype(np.float64)
    energy = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.nonzero(energy > energy.max() + threshold_db)[0]
    pad = int(pad_s * rate)
    start = max(0, loud[0] * hop - pad)
    end = min(len(audio), (loud[-1] + 1) * hop + pad)
    return audio[start:end]


def _to_corpus_audio(audio: np.ndarray, src_rate: int, rate: int) -> np.ndarray:
    """Engine output (mono) -> the corpus rate, silence trimmed."""
    return trim_silence(resample(audio, src_rate, rate), rate)


def synthesize_many(voice: Voice, texts: list[str], rate: int = 16000) -> list[np.ndarray]:
    """Speak several texts with one voice (festival: in one process); same output as
    calling synthesize on each text."""
    if voice.engine != "festival" or len(texts) < 2:
        return [synthesize(voice, t, rate) for t in texts]
    with tempfile.TemporaryDirectory(prefix="uasr_tts_") as tmp:
        workdir = Path(tmp)
        jobs = [(t, workdir / f"out{i}.wav") for i, t in enumerate(texts)]
        cmd = _festival_command(voice, jobs, workdir)
        r = subprocess.run(cmd, check=False, capture_output=True, text=True)
        out = []
        for text, wav in jobs:
            if r.returncode != 0 or not wav.is_file() or wav.stat().st_size <= 44:
                check_voice(voice)
                raise RuntimeError(f"voice {voice.id}: festival failed (exit {r.returncode}) "
                                   f"on {text!r}: {r.stderr.strip()[-500:]}")
            audio, src_rate = sf.read(wav, dtype="float32", always_2d=True)
            out.append(_to_corpus_audio(audio.mean(axis=1), src_rate, rate))
    return out


def synthesize(voice: Voice, text: str, rate: int = 16000) -> np.ndarray:
    """Speak `text` with `voice`; return trimmed float32 mono audio at `rate`."""
    if voice.engine == "hibari":
        check_voice(voice)
        audio, src_rate = hibari_engine.speak(voice.name, text, voice.rate)
        return _to_corpus_audio(audio, src_rate, rate)
    with tempfile.TemporaryDirectory(prefix="uasr_tts_") as tmp:
        workdir = Path(tmp)
        wav = workdir / "out.wav"
        cmd = _engine_command(voice, text, wav, workdir)
        r = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if r.returncode != 0 or not wav.is_file() or wav.stat().st_size <= 44:
            check_voice(voice)  # raises a clear install hint when that is the cause
            raise RuntimeError(f"voice {voice.id}: {' '.join(cmd[:3])} failed (exit "
                               f"{r.returncode}) on {text!r}: {r.stderr.strip()[-500:]}")
        audio, src_rate = sf.read(wav, dtype="float32", always_2d=True)
    return _to_corpus_audio(audio.mean(axis=1), src_rate, rate)
