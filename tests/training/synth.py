"""Tiny synthetic long-form data for training tests: fbank-like features where every word has a
fixed spectral pattern, whole "recordings" with several sentences and silences between them."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

WORDS = ["ab", "cd", "ef", "gh", "ij", "kl"]


class CharTokenizer:
    """Stands in for sentencepiece: letters and space, ids 0..n-1 (0 = unk)."""

    def __init__(self):
        self.chars = ["<unk>", " "] + sorted({c for w in WORDS for c in w})
        self.idx = {c: i for i, c in enumerate(self.chars)}

    def get_piece_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        return [self.idx.get(c, 0) for c in text]

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids if 0 < i < len(self.chars))


def _patterns(seed=0):
    r = np.random.default_rng(seed)
    return {w: r.normal(0, 2.0, (12, 80)).astype(np.float32) for w in WORDS}


def make_cuts(
    root: Path,
    n_recs: int = 4,
    n_sents: int = 5,
    seed: int = 0,
    storage=True,
    sentence_words=(1, 3),
):
    """Return a lhotse CutSet of whole recordings with features in numpy files under root."""
    from lhotse import CutSet, MonoCut, SupervisionSegment
    from lhotse.features.base import Features
    from lhotse.features.io import NumpyFilesWriter

    pats = _patterns()
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cuts = []
    with NumpyFilesWriter(str(root / "feats")) as w:
        for r in range(n_recs):
            frames, sups, t = [], [], 0
            lead = rng.randint(10, 30)
            frames.append(nrng.normal(-5, 0.3, (lead, 80)).astype(np.float32))
            t += lead
            for s in range(n_sents):
                words = [rng.choice(WORDS) for _ in range(rng.randint(*sentence_words))]
                start = t
                for wd in words:
                    frames.append(pats[wd] + nrng.normal(0, 0.3, (12, 80)).astype(np.float32))
                    t += 12
                sups.append(
                    SupervisionSegment(
                        f"r{r}-s{s}", f"r{r}", start / 100, (t - start) / 100, text=" ".join(words)
                    )
                )
                gap = rng.randint(10, 40)
                frames.append(nrng.normal(-5, 0.3, (gap, 80)).astype(np.float32))
                t += gap
            arr = np.concatenate(frames)
            key = w.write(f"r{r}", arr)
            feats = Features(
                type="fbank",
                num_frames=len(arr),
                num_features=80,
                frame_shift=0.01,
                sampling_rate=16000,
                start=0,
                duration=len(arr) / 100,
                storage_type=w.name,
                storage_path=str(w.storage_path),
                storage_key=key,
                recording_id=f"r{r}",
                channels=0,
            )
            cuts.append(MonoCut(f"r{r}", 0.0, len(arr) / 100, 0, features=feats, supervisions=sups))
    return CutSet.from_cuts(cuts)


def tiny_model_cfg(encoder: dict | None = None, llm: dict | None = None, **kw):
    """A tiny model; `encoder` / `llm` override keys of model.encoder / model.llm."""
    from unique_asr.models.config import ModelConfig

    enc = {"dim": 32, "layers": 1, "heads": 2, "chunk": 8, "left_chunks": 2, "subsample": "conv2d",
           "subsample_channels": 8, "zero_init": False, **(encoder or {})}
    dec = {"dim": 32, "layers": 1, "heads": 4, "kv_heads": 1, "ff": 64, **(llm or {})}
    base = {"n_text": CharTokenizer().get_piece_size(), "dropout": 0.0, "ctc_weight": 0.3,
            "cmn_window": 0, "ctc_max_s": 0.0, "ctc_upsample": 1, "ctc_segments": False, **kw}
    return ModelConfig.from_dict({**base, "encoder": enc, "llm": dec})


def train_cfg(**kw):
    """A TrainConfig for tiny CPU runs: steps only (no wall-clock budget), no CTC warm-up and
    no curriculum restart unless asked."""
    from unique_asr.training.config import TrainConfig

    base = {
        "device": "cpu",
        "num_threads": 1,
        "bf16": False,
        "lr": 3e-3,
        "weight_decay": 0.0,
        "warmup_steps": 2,
        "min_lr_ratio": 0.1,
        "max_steps": 6,
        "max_epochs": 100,
        "grad_clip": 5.0,
        "accum_grad": 1,
        "max_duration": 6.0,
        "num_buckets": 2,
        "curriculum": {
            "min_s": 0.5,
            "start_max_s": 2.0,
            "end_max_s": 20.0,
            "ramp_epochs": 2,
            "whole_prob": 0.3,
            "valid_max_s": 2.0,
            "restart_after_ctc_warmup": False,
        },
        "max_minutes": 0,
        "ctc_warmup_steps": 0,
        "save_every": 2,
        "keep_last": 2,
        "average_last": 2,
        "valid_every": 0,
        "valid_max_windows": 4,
        "valid_wer_recordings": 0,
        "log_every": 1,
        "max_bad_steps": 3,
        "resume": False,
        "halt_after_steps": 0,
    }
    base.update(kw)
    return TrainConfig.from_dict(base)
