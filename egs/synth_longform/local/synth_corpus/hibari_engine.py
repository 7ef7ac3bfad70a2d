"""The hibari neural TTS engine (PyPI package hibari-tts, Apache-2.0): ONNX, 24 kHz, own G2P.

Why in-process rather than a subprocess per utterance like the other engines: the model loads in
~0.5 s and then speaks ~130x faster than real time on one core, so loading it per utterance
would cost more than the speech. Each worker thread keeps its own model.

Only "heart", the voice inside the wheel, works offline; hibari downloads its other voices on
first use, so they are refused here. The text is already normalised to the reference words
(unique_asr.data.text_norm), so hibari's own normaliser is skipped: it would read "st" as
"saint" and "dr" as "doctor". The noise component is seeded from the text, so the same
sentence gives the same samples every time (byte-identical rebuilds).
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np

PACKAGE = "hibari-tts==0.2.1"
OFFLINE_VOICES = ("heart",)
MIN_SPEED, MAX_SPEED = 0.5, 2.0  # the speed range hibari documents
_local = threading.local()


def problem(name: str, pitch: float, rate: float) -> str | None:
    """Why this voice cannot be used (package missing, an online-only voice, a setting the
    engine lacks), or None."""
    try:
        import hibari  # noqa: F401
    except ImportError:
        return (f"the Python package '{PACKAGE.split('==')[0]}' is not installed; install it "
                f"with: .venv/bin/pip install {PACKAGE}")
    if name not in OFFLINE_VOICES:
        return (f"hibari voice '{name}' is downloaded at run time, so it cannot be used offline; "
                f"offline voices: {', '.join(OFFLINE_VOICES)}")
    if pitch:
        return "hibari has no pitch setting: leave pitch out (0)"
    if not MIN_SPEED <= rate <= MAX_SPEED:
        return f"hibari speaks at rates {MIN_SPEED}..{MAX_SPEED}, not {rate}"
    return None


def _model(name: str):
    models = getattr(_local, "models", None)
    if models is None:
        models = _local.models = {}
    if name not in models:
        from hibari import Hibari

        models[name] = Hibari(voice=name, threads=1)  # parallelism comes from worker threads
    return models[name]


def speak(name: str, text: str, rate: float) -> tuple[np.ndarray, int]:
    """Speak normalised `text` at speed factor `rate`: (float32 mono audio, sample rate)."""
    tts = _model(name)
    phonemes = tts.g2p(text + ".", normalize_text=False)  # final stop: sentence intonation
    seed = int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "little")
    audio = tts.from_ids(tts.ids(phonemes), rate, np.random.default_rng(seed))
    return np.asarray(audio, dtype=np.float32), int(tts.sample_rate)
