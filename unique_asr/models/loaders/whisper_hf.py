"""Whisper encoder from a Hugging Face WhisperModel / WhisperForConditionalGeneration directory
(config.json + safetensors; keys [model.]encoder.layers.N.self_attn.q_proj.weight, ...)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from unique_asr.models.loaders.safetensors_dir import read_safetensors_dir, require_file
from unique_asr.models.loaders.whisper_common import build_encoder, rename_blocks
from unique_asr.models.whisper import WhisperDims, WhisperEncoder


def load_hf_whisper_encoder(directory: str | Path, dtype: torch.dtype = torch.float32
                            ) -> WhisperEncoder:
    d = Path(directory)
    cfg = json.loads(require_file(d / "config.json", "the model configuration").read_text())
    if cfg.get("model_type") != "whisper":
        raise ValueError(f"{d}: config.json model_type is {cfg.get('model_type')!r}, "
                         "expected 'whisper'")
    c = WhisperDims(n_mels=cfg["num_mel_bins"], n_ctx=cfg["max_source_positions"],
                             d_model=cfg["d_model"], n_heads=cfg["encoder_attention_heads"],
                             n_layers=cfg["encoder_layers"])
    sd = read_safetensors_dir(d)
    prefix = "model.encoder." if any(k.startswith("model.encoder.") for k in sd) else "encoder."
    state = {k: sd[prefix + k] for k in ("conv1.weight", "conv1.bias", "conv2.weight",
                                         "conv2.bias") if prefix + k in sd}
    state["positions"] = sd.get(prefix + "embed_positions.weight")
    state["norm.weight"] = sd.get(prefix + "layer_norm.weight")
    state["norm.bias"] = sd.get(prefix + "layer_norm.bias")
    state = {k: v for k, v in state.items() if v is not None}
    state.update(rename_blocks(sd, c.n_layers, prefix + "layers.", style=1))
    return build_encoder(c, state, str(d), dtype)
