"""Stage 5: decode test sets with a trained checkpoint -> hyps-<set>-<tag>.jsonl + meta json.

    python -m unique_asr.bin.decode recipe_dir=egs/synth_longform decode.sets=[test]
    python -m unique_asr.bin.decode decode=beam decode.beam=8
    python -m unique_asr.bin.decode decode.sparse.method=unique decode.sparse.budget=256

Then score with the same overrides: python -m unique_asr.bin.score <same overrides>.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
from functools import partial
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig

from unique_asr.bin._common import hydra_entry, start, to_dict

log = logging.getLogger("unique_asr.decode")


def device_of(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"decode.device={name} but CUDA is not available; use decode.device=cpu")
    return torch.device(name)


def tokenizer(ck_bpe, dcfg, cfg):
    """(sentencepiece processor, the path of its model file)."""
    import sentencepiece as spm

    from unique_asr.data.paths import RecipeData

    path = dcfg.bpe_model or ck_bpe
    if path:
        if not Path(path).is_file():
            where = "decode.bpe_model" if dcfg.bpe_model else "the checkpoint (trained elsewhere?)"
            raise FileNotFoundError(f"tokenizer model {path} (from {where}) not found; pass "
                                    "decode.bpe_model=<data_dir>/lang_<type>/bpe.model")
        return spm.SentencePieceProcessor(model_file=str(path)), Path(path)
    rd = RecipeData(cfg.recipe_dir, cfg.data_dir)
    lang = cfg.data.lang
    return rd.load_bpe(lang.vocab_size, lang.model_type), rd.bpe_model_path(lang.vocab_size,
                                                                            lang.model_type)


def with_lm_text(dcfg, cfg, bpe_path: Path | None):
    """decode.method=ctc_beam's LM text for a model with a pretrained LLM's tokenizer (no lang
    dir beside it, bpe_path None): the recipe's stage-3 lm_text.txt unless decode.lm_text names
    one. Returns the DecodeConfig to decode with."""
    if bpe_path is not None or dcfg.lm_text:
        return dcfg
    from unique_asr.data.paths import RecipeData

    lang = cfg.data.lang
    lang_dir = RecipeData(cfg.recipe_dir, cfg.data_dir).lang_dir(lang.vocab_size, lang.model_type)
    return dataclasses.replace(dcfg, lm_text=str(lang_dir / "lm_text.txt"))


def load_model(dcfg, cfg, ck_path: Path, device: torch.device):
    """(model on `device` in decode.dtype, its config dict, tokenizer, tokenizer model path)."""
    from unique_asr.decoding.export import check_tokenizer, ready
    from unique_asr.models import load_checkpoint

    model, mcfg = load_checkpoint(ck_path, map_location="cpu")
    model = ready(model, device, dcfg.dtype)
    if model.tokenizer is not None:  # a pretrained LLM's own tokenizer
        return model, mcfg, model.tokenizer, None
    ck_bpe = torch.load(ck_path, map_location="cpu", weights_only=False).get("bpe_model")
    sp, bpe_path = tokenizer(ck_bpe, dcfg, cfg)
    check_tokenizer(sp, model.cfg.n_text, "set decode.bpe_model to its bpe.model")
    return model, mcfg, sp, bpe_path


def feature_width(mcfg, cfg) -> int:
    """Width of the features stage 2 stores for a ModelConfig: fbank bins, or its input width."""
    return mcfg.input_dim if mcfg.encoder.kind == "whisper" else int(cfg.data.fbank.num_mel_bins)


def run_meta(name: str, dcfg, ck_path, device, res, mcfg, command: str) -> dict:
    """meta-<set>-<tag>.json of a decoding run (scoring.hyps); name: the model preset's."""
    from dataclasses import asdict

    from unique_asr.decoding.layout import method_name
    from unique_asr.scoring.results import git_hash

    return {
        "model": f"{name} ({Path(ck_path).name})",
        "checkpoint": str(ck_path), "attention": dcfg.sparse.method,
        "budget": dcfg.sparse.budget, "method": method_name(dcfg),
        "device": str(device), "dtype": dcfg.dtype, "torch": torch.__version__,
        "speed": res.speed.to_dict(), "skipped": res.skipped, "notes": dict(res.notes),
        "recordings": len(res.rows), "git": git_hash(), "command": command,
        "decode_cfg": asdict(dcfg), "model_cfg": mcfg,
    }


def command_line(module: str) -> str:
    return f"python -m unique_asr.bin.{module} " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def run(cfg: DictConfig) -> list[dict]:
    from unique_asr.data.paths import RecipeData
    from unique_asr.decoding.config import DecodeConfig
    from unique_asr.decoding.layout import find_checkpoint, run_out_dir, run_tag
    from unique_asr.decoding.ngram_lm import lm_for_decoding
    from unique_asr.decoding.runner import AudioInput, decode_cuts
    from unique_asr.models.whisper_features import extractor_for
    from unique_asr.scoring.hyps import hyps_path, meta_path, write_hyps, write_meta

    dcfg = DecodeConfig.from_dict(to_dict(cfg.decode))  # validated before any slow work
    ck_path = find_checkpoint(dcfg.model_dir, dcfg.checkpoint)
    out_dir, tag = run_out_dir(dcfg, ck_path), run_tag(dcfg)
    device = device_of(dcfg.device)
    model, mcfg, sp, bpe_path = load_model(dcfg, cfg, ck_path, device)
    dcfg = with_lm_text(dcfg, cfg, bpe_path)
    audio = AudioInput(int(cfg.data.sample_rate), feature_width(model.cfg, cfg),
                       bool(cfg.data.get("skip_bad", False)), partial(extractor_for, model.cfg))
    lm, lexicon = lm_for_decoding(dcfg, sp, bpe_path)
    rd = RecipeData(cfg.recipe_dir, cfg.data_dir, model.cfg.feature_set)
    command = command_line("decode")
    summaries = []
    for test_set in dcfg.sets:
        res = decode_cuts(model, rd.load_cuts(test_set), sp, dcfg, device, lm, lexicon, audio)
        write_hyps(hyps_path(out_dir, test_set, tag), res.rows)
        meta = run_meta(cfg.model.get("name", "model"), dcfg, ck_path, device, res, mcfg,
                        command)
        write_meta(meta_path(out_dir, test_set, tag), meta)
        sp_ = res.speed
        log.info(
            "%s %s: %d recordings (%.1f s audio), %d skipped, RTF %.4f, RTFx %.1f, "
            "%.1f tokens/s; notes %s -> %s", test_set, tag, len(res.rows), sp_.audio_seconds,
            len(res.skipped), sp_.rtf, sp_.rtfx, sp_.tokens_per_second, dict(res.notes), out_dir,
        )
        summaries.append(meta)
    return summaries


@hydra_entry
def main(cfg: DictConfig) -> None:
    start(cfg, "decode")
    run(cfg)


if __name__ == "__main__":
    main()
