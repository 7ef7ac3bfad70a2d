"""Stage 1: corpus directory -> validated lhotse manifests (unique_asr.data.manifests).

    python -m unique_asr.bin.manifests recipe_dir=egs/synth_longform
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from unique_asr.bin._common import hydra_entry, start


@hydra_entry
def main(cfg: DictConfig) -> None:
    from unique_asr.data.manifests import build_manifests

    start(cfg, "manifests")
    data = Path(cfg.data_dir)
    build_manifests(data / "corpus", data / "manifests", list(cfg.data.splits))


if __name__ == "__main__":
    main()
