"""Stage 2: 80-dim log-mel fbank (lhotse) for every split, stored with lhotse's writers.

Cuts are one per whole recording (long-form), carrying all its supervisions, so training can
window them freely and decoding can read whole recordings. Output per split:
    <fbank_dir>/cuts_<split>.jsonl.gz      the cut manifest (written last, atomically)
    <fbank_dir>/feats_<split>/             feature storage (one array per recording)
and for train, <fbank_dir>/global_stats_train.json (per-dimension mean and std for
global mean/variance normalisation).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from .atomic import write_json, write_manifest

log = logging.getLogger(__name__)


def _writer(storage: str):
    from lhotse import LilcomChunkyWriter, NumpyFilesWriter

    if storage == "numpy_files":
        return NumpyFilesWriter
    if storage == "lilcom_chunky":
        try:
            import lilcom  # noqa: F401
        except ImportError as e:
            raise ImportError("data.fbank.storage=lilcom_chunky needs the 'lilcom' package "
                              "(pip install lilcom), or use data.fbank.storage=numpy_files") from e
        return LilcomChunkyWriter
    raise ValueError(f"data.fbank.storage={storage!r}: use numpy_files or lilcom_chunky")


def compute_fbank(manifests_dir: str | Path, fbank_dir: str | Path, splits: list[str],
                  num_mel_bins: int = 80, storage: str = "numpy_files",
                  num_jobs: int = 2, extractor=None,
                  sample_rate: int = 16000) -> dict[str, dict]:
    """Compute and store fbank for each split whose cut manifest does not exist yet.
    extractor: another lhotse FeatureExtractor instead (one process: it may hold a model).
    Recordings of any rate and channel count are heard as the model hears them (model_audio):
    mono at `sample_rate`."""
    import torch
    from lhotse import CutSet, Fbank, FbankConfig, RecordingSet, SupervisionSet

    from .model_audio import ModelAudio, model_cut

    if extractor is None:  # lhotse's fbank runs in worker processes of one thread each
        torch.set_num_threads(1)
    manifests_dir, fbank_dir = Path(manifests_dir), Path(fbank_dir)
    fbank = extractor is None
    if fbank:
        extractor = Fbank(FbankConfig(num_mel_bins=num_mel_bins))
    else:
        num_jobs = 1
    extractor = ModelAudio(extractor, sample_rate)
    stats = {}
    for split in splits:
        rec_path = manifests_dir / f"recordings_{split}.jsonl.gz"
        sup_path = manifests_dir / f"supervisions_{split}.jsonl.gz"
        for p in (rec_path, sup_path):
            if not p.is_file():
                raise FileNotFoundError(f"{p} not found: run stage 1 (manifests) first")
        cuts_path = fbank_dir / f"cuts_{split}.jsonl.gz"
        if cuts_path.is_file():
            log.info("%s: %s exists, skipping", split, cuts_path)
            continue
        storage_dir = fbank_dir / f"feats_{split}"
        if storage_dir.exists():  # left by an interrupted run: redo it from scratch
            shutil.rmtree(storage_dir)
        cuts = CutSet.from_manifests(recordings=RecordingSet.from_file(rec_path),
                                     supervisions=SupervisionSet.from_file(sup_path))
        cuts = CutSet.from_cuts(model_cut(c, sample_rate) for c in cuts)
        cuts = cuts.compute_and_store_features(
            # a process pool costs seconds to start: only worth it with several recordings
            extractor=extractor, storage_path=storage_dir,
            num_jobs=max(1, min(num_jobs, len(cuts) // 2)),
            storage_type=_writer(storage)).sort_by_recording_id()
        if split == "train" and fbank:  # the conformer's CMVN statistics (Whisper normalises
            write_json(fbank_dir / "global_stats_train.json", _global_stats(cuts))  # its own)
        write_manifest(cuts_path, cuts)
        frames = sum(c.num_frames for c in cuts)
        stats[split] = {"cuts": len(cuts), "frames": frames}
        log.info("%s: %d cuts, %d frames -> %s", split, len(cuts), frames, cuts_path)
    return stats


def _global_stats(cuts) -> dict:
    total, sq, n = None, None, 0
    for cut in cuts:
        f = cut.load_features().astype(np.float64)
        total = f.sum(0) if total is None else total + f.sum(0)
        sq = (f**2).sum(0) if sq is None else sq + (f**2).sum(0)
        n += len(f)
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean**2, 1e-10))
    return {"frames": n, "mean": mean.round(6).tolist(), "std": std.round(6).tolist()}


def load_global_stats(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (mean, std) float32 arrays from global_stats_train.json."""
    d = json.loads(Path(path).read_text())
    return np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32)
