"""Stage 2's features for model.encoder=whisper, as a lhotse FeatureExtractor so they are stored
and read like fbank (one array per recording, a cut manifest pointing at it):

- cached=false: Whisper log-mel [ceil(n / 160), 80] at 10 ms (whisper_audio.whisper_log_mel);
- cached=true: the frozen encoder's outputs [ceil(n / 320), dim] at 20 ms, i.e. what the model's
  WhisperAudioEncoder computes from that log-mel over 30-s windows; training then reads them and
  never runs the encoder. The encoder runs on the GPU when there is one (float32), one recording's
  windows as one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from lhotse.features.base import FeatureExtractor

from unique_asr.models.config import WhisperEncoderConfig
from unique_asr.models.whisper_audio import WhisperAudioEncoder, whisper_log_mel


@dataclass
class WhisperFeaturesConfig:
    source: str = "whisper-base"
    dim: int = 512
    cached: bool = False


class WhisperFeatures(FeatureExtractor):
    name = "unique-asr-whisper"
    config_type = WhisperFeaturesConfig

    def __init__(self, config: WhisperFeaturesConfig | None = None,
                 encoder: WhisperAudioEncoder | None = None):
        super().__init__(config)
        self.encoder = encoder.eval() if encoder is not None else None
        if self.config.cached and encoder is None:
            raise ValueError("cached Whisper features need the encoder")

    @classmethod
    def for_model(cls, enc: WhisperEncoderConfig) -> WhisperFeatures:
        """The features model.encoder=`enc` reads (loads the encoder when cached)."""
        cfg = WhisperFeaturesConfig(enc.source, enc.dim, enc.cached)
        if not enc.cached:
            return cls(cfg)
        from unique_asr.models.loaders.pretrained import load_whisper

        live = WhisperEncoderConfig(source=enc.source, dim=enc.dim)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(cfg, WhisperAudioEncoder(live, load_whisper(enc.source)).to(device))

    def _model_encoder(self) -> WhisperEncoderConfig:
        return WhisperEncoderConfig(source=self.config.source, dim=self.config.dim,
                                    cached=self.config.cached)

    @property
    def frame_shift(self) -> float:
        return self._model_encoder().input_frame_seconds

    def feature_dim(self, sampling_rate: int) -> int:
        return self._model_encoder().input_dim

    @torch.inference_mode()
    def extract(self, samples: np.ndarray, sampling_rate: int) -> np.ndarray:
        if sampling_rate != 16000:
            raise ValueError(f"Whisper features need 16 kHz audio, got {sampling_rate} Hz")
        audio = torch.as_tensor(np.asarray(samples, np.float32)).reshape(-1)
        mel = whisper_log_mel(audio)
        out = mel
        if self.config.cached:
            device = next(self.encoder.parameters()).device
            mel = mel.to(device)
            out = self.encoder(mel[None], torch.tensor([mel.shape[0]], device=device))[0][0]
        return _fit(out.float().cpu().numpy(), audio.shape[0] / sampling_rate, self.frame_shift,
                    sampling_rate)


def extractor_for(mcfg) -> WhisperFeatures | None:
    """The extractor of a model's stage-2 features (a ModelConfig): Whisper's for
    model.encoder=whisper, None for fbank (the data layer's default extractor)."""
    return WhisperFeatures.for_model(mcfg.encoder) if mcfg.encoder.kind == "whisper" else None


def _fit(feats: np.ndarray, duration: float, frame_shift: float, sampling_rate: int):
    """Trim or pad (repeating the last frame) to lhotse's frame count for this duration (it
    rounds where Whisper's convolutions round up: they differ by at most one frame)."""
    from lhotse.utils import compute_num_frames

    n = compute_num_frames(duration, frame_shift, sampling_rate)
    if feats.shape[0] >= n:
        return feats[:n]
    return np.concatenate([feats, np.repeat(feats[-1:], n - feats.shape[0], 0)])
