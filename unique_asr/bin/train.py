"""Stage 4: train the speech LLM (hydra; one process, or torchrun for DDP).

    python -m unique_asr.bin.train recipe_dir=egs/synth_longform model=tiny
    python -m unique_asr.bin.train train.resume=true            # continue exactly from last.pt
    python -m unique_asr.bin.train train.attention.kind=unique_soft train.attention.budget=256
    torchrun --nproc_per_node 8 -m unique_asr.bin.train model=small train=gpu

Writes to ${exp_dir}: checkpoint-<step>.pt (last train.keep_last), last.pt, avg-<N>.pt,
train_log.jsonl (one line per step), tensorboard/, bad_input.json, train_summary.json.
"""

from __future__ import annotations

import logging
import os

from omegaconf import DictConfig, OmegaConf

from unique_asr.bin._common import hydra_entry, start, to_dict

log = logging.getLogger("unique_asr.train")


@hydra_entry
def main(cfg: DictConfig) -> None:
    import torch

    from unique_asr.data.paths import RecipeData
    from unique_asr.decoding import greedy_decode
    from unique_asr.models.config import ModelConfig
    from unique_asr.training.config import TrainConfig
    from unique_asr.training.data import load_recordings
    from unique_asr.training.trainer import train

    start(cfg, "train")
    tcfg = TrainConfig.from_dict(OmegaConf.to_container(cfg.train, resolve=True))
    if tcfg.num_threads:
        torch.set_num_threads(int(tcfg.num_threads))
    mdict = to_dict(cfg.model)
    rd = RecipeData(cfg.recipe_dir, cfg.data_dir, ModelConfig.from_dict(mdict).feature_set)
    sp, bpe_path = _tokenizer(cfg, rd, mdict)
    mdict["n_text"] = sp.get_piece_size()
    model_cfg = ModelConfig.from_dict(mdict)
    skip_bad = bool(cfg.data.get("skip_bad", False))
    n_mels = model_cfg.input_dim if model_cfg.encoder.kind == "whisper" else int(
        cfg.data.fbank.num_mel_bins)
    train_data = load_recordings(rd.load_cuts(tcfg.train_split), model_cfg, skip_bad, n_mels,
                                 desc="load train")
    dev_data = None
    if tcfg.valid_split:
        dev_data = load_recordings(rd.load_cuts(tcfg.valid_split), model_cfg, skip_bad, n_mels,
                                   desc="load dev")
    exp_dir = os.path.join(cfg.exp_dir, tcfg.tag or "")
    if int(os.environ.get("RANK", "0")) == 0:
        os.makedirs(exp_dir, exist_ok=True)
        OmegaConf.save(cfg, os.path.join(exp_dir, "config.yaml"), resolve=True)
    log.info("model: %s", model_cfg.to_dict())
    log.info("train data: %d recordings, %.1f h; bad input: %s", len(train_data[1]),
             sum(r[1] for r in train_data[1].values()) / 3600, train_data[2].summary())
    train(model_cfg, tcfg, exp_dir, train_data, dev_data, sp, int(cfg.seed), bpe_path,
          greedy=greedy_decode)


def _tokenizer(cfg: DictConfig, rd, mdict: dict):
    """(text tokenizer, its bpe.model path or None): stage 3's BPE, or the pretrained LLM's own
    tokenizer for model.llm=pretrained."""
    llm = mdict.get("llm") or {}
    if isinstance(llm, dict) and llm.get("kind") == "pretrained":
        from unique_asr.models.loaders.pretrained import load_llm_tokenizer

        return load_llm_tokenizer(llm["source"]), None
    vocab, vocab_type = int(cfg.data.lang.vocab_size), str(cfg.data.lang.model_type)
    return rd.load_bpe(vocab, vocab_type), str(rd.bpe_model_path(vocab, vocab_type))


if __name__ == "__main__":
    main()
