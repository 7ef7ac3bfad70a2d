"""Stage 2: 80-dim fbank for every split (unique_asr.data.fbank).

    python -m unique_asr.bin.features recipe_dir=egs/synth_longform num_workers=2
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from unique_asr.bin._common import hydra_entry, start


@hydra_entry
def main(cfg: DictConfig) -> None:
    from unique_asr.data.fbank import compute_fbank

    start(cfg, "features")
    data = Path(cfg.data_dir)
    compute_fbank(data / "manifests", data / "fbank", list(cfg.data.splits),
                  num_mel_bins=int(cfg.data.fbank.num_mel_bins), storage=cfg.data.fbank.storage,
                  num_jobs=int(cfg.num_workers))


if __name__ == "__main__":
    main()
