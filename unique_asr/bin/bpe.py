"""Stage 3: sentencepiece BPE on the training transcripts -> <data_dir>/lang_bpe_<N>/
(lang_char/ with data.lang.model_type=char).

    python -m unique_asr.bin.bpe recipe_dir=egs/synth_longform data.lang.vocab_size=256
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from unique_asr.bin._common import CONFIG_PATH, start


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def main(cfg: DictConfig) -> None:
    from unique_asr.data.bpe import train_bpe
    from unique_asr.data.paths import RecipeData

    start(cfg, "bpe")
    rd = RecipeData(cfg.recipe_dir, cfg.data_dir)
    lang = cfg.data.lang
    train_bpe(rd.supervisions_path("train"), rd.lang_dir(lang.vocab_size, lang.model_type),
              lang.vocab_size, lang.model_type, float(lang.character_coverage))


if __name__ == "__main__":
    main()
