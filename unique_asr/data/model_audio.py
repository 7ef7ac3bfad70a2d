"""Audio as the model hears it: one channel at data.sample_rate, whatever the file holds.

Every feature computed from audio goes through ModelAudio: stage 2 (stored features), the
on-the-fly features of cuts without them, and the transcription of users' files. So one file
gives the same features, bit for bit, on every route, and the transcripts of stage 5 and of
bin.transcribe agree. Channels are averaged first (one channel to resample), then lhotse's
resampler (the one cut.resample uses) brings the audio to the model's rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from lhotse.features.base import FeatureExtractor


def to_model_audio(samples: np.ndarray, sampling_rate: int, sample_rate: int) -> np.ndarray:
    """[channels, n] or [n] audio at `sampling_rate` -> float32 [1, n'] mono at `sample_rate`."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"audio of shape {x.shape}: expected [channels, samples]")
    if sampling_rate != sample_rate:
        from lhotse.augmentation import Resample

        x = Resample(sampling_rate, sample_rate)(x, sampling_rate)
    if x.shape[0] > 1:
        x = x.mean(axis=0, keepdims=True, dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def model_cut(cut, sample_rate: int):
    """The cut at the model's rate (lazily: lhotse resamples while loading); its channels are
    mixed by ModelAudio when features are computed."""
    return cut if cut.sampling_rate == sample_rate else cut.resample(sample_rate)


@dataclass
class ModelAudioConfig:
    sample_rate: int = 16000


class ModelAudio(FeatureExtractor):
    """Wraps a lhotse extractor (fbank, Whisper features) so it is always fed mono audio at the
    model's rate; stored features keep the wrapped extractor's name."""

    config_type = ModelAudioConfig

    def __init__(self, inner: FeatureExtractor, sample_rate: int = 16000):
        super().__init__(ModelAudioConfig(int(sample_rate)))
        self.inner = inner
        self.name = inner.name

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_shift(self) -> float:
        return self.inner.frame_shift

    def feature_dim(self, sampling_rate: int) -> int:
        return self.inner.feature_dim(self.sample_rate)

    def extract(self, samples: np.ndarray, sampling_rate: int) -> np.ndarray:
        audio = to_model_audio(samples, sampling_rate, self.sample_rate)
        return self.inner.extract(audio, self.sample_rate)
