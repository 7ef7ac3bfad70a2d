"""Whisper encoder from an openai-whisper `.pt` checkpoint: {"dims": {...}, "model_state_dict":
{encoder.conv1.weight, encoder.positional_embedding, encoder.blocks.N.attn.query.weight, ...}}."""

from __future__ import annotations

from pathlib import Path

import torch

from unique_asr.models.loaders.whisper_common import build_encoder, rename_blocks
from unique_asr.models.whisper import WhisperDims, WhisperEncoder


def load_openai_whisper_encoder(path: str | Path, dtype: torch.dtype = torch.float32
                                ) -> WhisperEncoder:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"openai-whisper checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        raise ValueError(f"{path}: not an openai-whisper checkpoint (needs 'dims' and "
                         "'model_state_dict')")
    dims, sd = ckpt["dims"], ckpt["model_state_dict"]
    c = WhisperDims(n_mels=dims["n_mels"], n_ctx=dims["n_audio_ctx"],
                             d_model=dims["n_audio_state"], n_heads=dims["n_audio_head"],
                             n_layers=dims["n_audio_layer"])
    p = "encoder."
    state = {k: sd[p + k] for k in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias")}
    state["norm.weight"], state["norm.bias"] = sd[p + "ln_post.weight"], sd[p + "ln_post.bias"]
    if p + "positional_embedding" in sd:
        state["positions"] = sd[p + "positional_embedding"]
    state.update(rename_blocks(sd, c.n_layers, p + "blocks.", style=0))
    return build_encoder(c, state, str(path), dtype)
