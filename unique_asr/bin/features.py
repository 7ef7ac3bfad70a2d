"""Stage 2: features for every split: 80-dim fbank (unique_asr.data.fbank), or, for
model.encoder=whisper, Whisper log-mel or (model.encoder.cached=true) the frozen Whisper
encoder's outputs (unique_asr.models.whisper_features) in data/<model.feature_set>/.

    python -m unique_asr.bin.features recipe_dir=egs/synth_longform num_workers=2
    python -m unique_asr.bin.features model=whisper_base_smollm2
"""

from __future__ import annotations

import logging
import time

from omegaconf import DictConfig

from unique_asr.bin._common import hydra_entry, start, to_dict

log = logging.getLogger("unique_asr.features")


@hydra_entry
def main(cfg: DictConfig) -> None:
    from unique_asr.data.fbank import compute_fbank
    from unique_asr.data.paths import RecipeData
    from unique_asr.models.config import ModelConfig
    from unique_asr.models.whisper_features import extractor_for

    start(cfg, "features")
    mcfg = ModelConfig.from_dict(to_dict(cfg.model))
    rd = RecipeData(cfg.recipe_dir, cfg.data_dir, mcfg.feature_set)
    extractor = extractor_for(mcfg)
    if extractor is not None:  # runs in this process: give it the workers' threads
        import torch

        torch.set_num_threads(max(1, int(cfg.num_workers)))
    t0 = time.perf_counter()
    stats = compute_fbank(rd.manifests_dir, rd.fbank_dir, list(cfg.data.splits),
                          num_mel_bins=int(cfg.data.fbank.num_mel_bins),
                          storage=cfg.data.fbank.storage, num_jobs=int(cfg.num_workers),
                          extractor=extractor, sample_rate=int(cfg.data.sample_rate))
    log.info("features %s: %s in %.1f s", mcfg.feature_set, stats, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
