"""Features of one whole cut, for training and decoding alike, and the one bad-input policy.

Cuts from stage 2 carry stored features and are read as they are. Cuts without features
(another recipe's manifests, a user's own files) get them computed from the audio exactly as
stage 2 computes them: the same extractor (lhotse fbank unless the caller passes the model's),
fed mono audio at the model's rate by data.model_audio (resampling and channel mixing are
counted in `notes["resampled"]`, `notes["mixed_to_mono"]`).

Bad input is never repaired silently: a cut whose audio or features cannot be read, whose
features have the wrong shape, or whose features hold NaN/inf values raises BadInputError naming
the cut and the file. The callers skip (and count) exactly those cuts when data.skip_bad=true.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


class BadInputError(RuntimeError):
    """A cut whose audio or features are unusable; `kind` says how (unreadable, bad_shape,
    non_finite), for the counts of skipped cuts."""

    def __init__(self, message: str, kind: str = "unreadable"):
        super().__init__(message)
        self.kind = kind


@dataclass
class BadInputStats:
    """Counts of bad or fixed-up input by kind, with one example of each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def add(self, kind: str, what: str) -> None:
        self.counts[kind] += 1
        self.examples.setdefault(kind, what)

    def summary(self) -> str:
        if not self.counts:
            return "no bad input"
        return "; ".join(f"{k}: {n} (e.g. {self.examples[k]})" for k, n in sorted(
            self.counts.items()))


SKIP_HINT = "set data.skip_bad=true to skip such cuts"


def _audio_paths(cut) -> list[str]:
    rec = getattr(cut, "recording", None)
    return [str(s.source) for s in rec.sources if s.type == "file"] if rec is not None else []


def _feature_path(cut) -> str:
    f = cut.features
    return str(Path(f.storage_path) / f.storage_key) if f.storage_path else str(f.storage_key)


def source_of(cut) -> str:
    """The file(s) a cut's features come from, for messages."""
    if cut.has_features:
        return _feature_path(cut)
    return ", ".join(_audio_paths(cut)) or "<audio in memory>"


def load_features(cut, num_mel_bins: int = 80, sample_rate: int = 16000,
                  notes: Counter | None = None, extractor=None) -> torch.Tensor:
    """FloatTensor [T, num_mel_bins] of a whole cut; BadInputError for unusable input.
    extractor: the lhotse extractor of a cut without stored features (None: fbank of
    num_mel_bins bins); num_mel_bins is then its feature width."""
    notes = Counter() if notes is None else notes
    if cut.has_features:
        try:
            feats = cut.load_features()
        except Exception as e:
            raise BadInputError(
                f"cut {cut.id}: cannot read its features {_feature_path(cut)} "
                f"({type(e).__name__}: {e}); re-run stage 2 (features) or {SKIP_HINT}") from e
    else:
        feats = _features_from_audio(cut, notes, sample_rate, extractor or _fbank(num_mel_bins))
    feats = torch.as_tensor(np.asarray(feats, dtype=np.float32))
    if feats.ndim != 2 or feats.shape[1] != num_mel_bins:
        raise BadInputError(
            f"cut {cut.id}: features of shape {tuple(feats.shape)} in {source_of(cut)}, expected "
            f"[T, {num_mel_bins}] (data.fbank.num_mel_bins); {SKIP_HINT}", "bad_shape")
    bad = int((~torch.isfinite(feats).all(-1)).sum())
    if bad:
        raise BadInputError(
            f"cut {cut.id}: {bad} of {feats.shape[0]} feature frames hold NaN/inf values "
            f"({source_of(cut)}); re-run stage 2 (features), check the audio, or {SKIP_HINT}",
            "non_finite")
    return feats


def _fbank(num_mel_bins: int):
    from lhotse import Fbank, FbankConfig

    return Fbank(FbankConfig(num_mel_bins=num_mel_bins))


def _features_from_audio(cut, notes: Counter, sample_rate: int, extractor):
    from unique_asr.data.model_audio import ModelAudio, model_cut

    for p in _audio_paths(cut):
        if not Path(p).is_file():
            raise BadInputError(f"cut {cut.id}: audio file {p} is missing; fix the recording "
                                f"manifest or {SKIP_HINT}")
    if cut.sampling_rate != sample_rate:
        notes["resampled"] += 1
    if cut.num_channels > 1:
        notes["mixed_to_mono"] += 1
    cut = model_cut(cut, sample_rate)
    try:
        audio = cut.load_audio()
    except Exception as e:
        raise BadInputError(
            f"cut {cut.id}: cannot read audio {source_of(cut)} ({type(e).__name__}: {e}); "
            f"{SKIP_HINT}") from e
    if audio.size == 0:
        raise BadInputError(f"cut {cut.id}: audio {source_of(cut)} is empty; {SKIP_HINT}")
    return ModelAudio(extractor, sample_rate).extract(audio, sample_rate)
