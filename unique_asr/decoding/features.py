"""Features of one test recording for decoding, with bad input named or counted, not crashed on.

Cuts from stage 2 carry stored fbank and are read as they are. Cuts without features (another
recipe's manifests, a quick test) get the same 80-dim lhotse fbank computed from the audio, after
resampling to the expected rate. What goes wrong is raised as BadInputError naming the cut and the
file, so `data.skip_bad=true` can skip exactly those; fixable oddities are counted in `notes`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch


class BadInputError(RuntimeError):
    """A test cut whose audio or features cannot be read."""


def _audio_paths(cut) -> list[str]:
    rec = getattr(cut, "recording", None)
    return [s.source for s in rec.sources if s.type == "file"] if rec is not None else []


def _feature_path(cut) -> str:
    f = cut.features
    return str(Path(f.storage_path) / f.storage_key) if f.storage_path else str(f.storage_key)


def cut_features(cut, notes: Counter, sample_rate: int = 16000, num_mel_bins: int = 80):
    """FloatTensor [T, num_mel_bins] for a whole cut; NaN/inf frames are zeroed and counted."""
    if cut.has_features:
        try:
            feats = cut.load_features()
        except Exception as e:
            raise BadInputError(
                f"cut {cut.id}: cannot read its features {_feature_path(cut)} ({e}); re-run "
                "stage 2 (features) or set data.skip_bad=true to skip it"
            ) from e
    else:
        feats = _fbank_from_audio(cut, notes, sample_rate, num_mel_bins)
    feats = torch.as_tensor(np.asarray(feats, dtype=np.float32))
    if feats.ndim != 2 or feats.shape[1] != num_mel_bins:
        raise BadInputError(
            f"cut {cut.id}: features of shape {tuple(feats.shape)}, expected [T, {num_mel_bins}]"
        )
    bad = ~torch.isfinite(feats).all(-1)
    if bad.any():
        notes["frames_nan_zeroed"] += int(bad.sum())
        notes["recordings_with_nan"] += 1
        feats[bad] = 0.0
    return feats


def _fbank_from_audio(cut, notes: Counter, sample_rate: int, num_mel_bins: int):
    from lhotse import Fbank, FbankConfig

    for p in _audio_paths(cut):
        if not Path(p).is_file():
            raise BadInputError(
                f"cut {cut.id}: audio file {p} is missing; fix the recording manifest or set "
                "data.skip_bad=true to skip it"
            )
    if cut.sampling_rate != sample_rate:
        notes["resampled"] += 1
        cut = cut.resample(sample_rate)
    try:
        audio = cut.load_audio()
    except Exception as e:
        raise BadInputError(
            f"cut {cut.id}: cannot read audio {', '.join(_audio_paths(cut)) or '<in memory>'} "
            f"({type(e).__name__}: {e}); set data.skip_bad=true to skip it"
        ) from e
    if audio.size == 0:
        raise BadInputError(f"cut {cut.id}: audio {', '.join(_audio_paths(cut))} is empty")
    extractor = Fbank(FbankConfig(num_mel_bins=num_mel_bins))
    return extractor.extract(audio, sample_rate)


def pad_short(feats: torch.Tensor, min_frames: int, notes: Counter) -> torch.Tensor:
    """Pad a recording shorter than `min_frames` with copies of its quietest frame.

    One page of audio tokens (page_size x 80 ms) is the least the decoder's paged cache and the
    encoder's subsampling are built for; a shorter recording is extended with near-silence
    rather than refused, and counted.
    """
    T = feats.shape[0]
    if T >= min_frames:
        return feats
    notes["padded_short"] += 1
    if T == 0:
        fill = torch.full((1, feats.shape[1]), float(np.log(1e-10)), dtype=feats.dtype)
    else:
        fill = feats[feats.mean(-1).argmin()][None]
    return torch.cat([feats, fill.expand(min_frames - T, -1)], 0)
