"""Stage 3: sentencepiece BPE on the training transcripts -> <data_dir>/lang_bpe_<N>/
(lang_char/ with data.lang.model_type=char), and lm_text.txt there: the decoding LM's text (the
training transcripts + data.lang.lm_extra_files, minus every dev and test sentence).

    python -m unique_asr.bin.bpe recipe_dir=egs/synth_longform data.lang.vocab_size=256
"""

from __future__ import annotations

from omegaconf import DictConfig

from unique_asr.bin._common import hydra_entry, start


@hydra_entry
def main(cfg: DictConfig) -> None:
    from lhotse import SupervisionSet

    from unique_asr.data.bpe import train_bpe, write_lm_text
    from unique_asr.data.paths import RecipeData
    from unique_asr.data.text_source import load_sentences

    start(cfg, "bpe")
    rd = RecipeData(cfg.recipe_dir, cfg.data_dir)
    lang = cfg.data.lang
    lang_dir = rd.lang_dir(lang.vocab_size, lang.model_type)
    train_bpe(rd.supervisions_path("train"), lang_dir, lang.vocab_size, lang.model_type,
              float(lang.character_coverage))

    def texts(split):
        path = rd.supervisions_path(split)
        return [s.text for s in SupervisionSet.from_file(path) if s.text] if path.is_file() else []

    extra = []
    if lang.get("lm_extra_files"):
        extra = load_sentences(lang.lm_extra_dir, list(lang.lm_extra_files),
                               package=str(lang.get("lm_extra_package", "fortunes")))
    held_out = {t for split in cfg.data.splits if split != "train" for t in texts(split)}
    write_lm_text(lang_dir, texts("train"), extra, held_out)


if __name__ == "__main__":
    main()
