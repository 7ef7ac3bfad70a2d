"""Stage 7: export a trained model to one directory that decodes without the recipe's data/
(decoding/export.py: weights, resolved model config, tokenizer and LM text, feature settings).

    python -m unique_asr.bin.export                        # <decode.model_dir>/export, newest avg
    python -m unique_asr.bin.export decode.checkpoint=exp/tiny/avg-3.pt transcribe.model=DIR

The checkpoint is found as stage 5 finds it (decode.model_dir, decode.checkpoint), and so is
its tokenizer (decode.bpe_model, the checkpoint's, or the recipe's lang dir).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from unique_asr.bin._common import hydra_entry, start, to_dict

log = logging.getLogger("unique_asr.export")


def export_dir(cfg: DictConfig) -> Path:
    """transcribe.model, else <decode.model_dir>/export."""
    if cfg.transcribe.model:
        return Path(cfg.transcribe.model)
    if not cfg.decode.model_dir:
        raise ValueError("no model: set transcribe.model=DIR or decode.model_dir=<training run>")
    return Path(cfg.decode.model_dir) / "export"


def export_checkpoint(cfg: DictConfig, dcfg, ck_path: Path, out: Path) -> Path:
    """Export `ck_path` (with the tokenizer and feature settings stage 5 would use) to `out`."""
    import torch

    from unique_asr.bin.decode import feature_width, tokenizer
    from unique_asr.decoding.export import check_tokenizer, export_model
    from unique_asr.models.config import ModelConfig, known_keys_only

    ck = torch.load(ck_path, map_location="cpu", weights_only=False)
    mcfg = ModelConfig.from_dict(known_keys_only(ck["model_cfg"])[0])  # load_checkpoint warns
    bpe_path = None
    if mcfg.llm.kind != "pretrained":  # a pretrained LLM brings its own tokenizer
        sp, bpe_path = tokenizer(ck.get("bpe_model"), dcfg, cfg)
        check_tokenizer(sp, mcfg.n_text, "set decode.bpe_model to its bpe.model")
    export_model(ck_path, out, bpe_path, int(cfg.data.sample_rate), feature_width(mcfg, cfg))
    log.info("exported %s -> %s", ck_path, out)
    return out


def run(cfg: DictConfig) -> Path:
    from unique_asr.decoding.config import DecodeConfig
    from unique_asr.decoding.layout import find_checkpoint

    dcfg = DecodeConfig.from_dict(to_dict(cfg.decode))
    return export_checkpoint(cfg, dcfg, find_checkpoint(dcfg.model_dir, dcfg.checkpoint),
                             export_dir(cfg))


@hydra_entry
def main(cfg: DictConfig) -> None:
    start(cfg, "export")
    run(cfg)


if __name__ == "__main__":
    main()
