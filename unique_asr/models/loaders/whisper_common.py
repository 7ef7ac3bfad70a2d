"""Shared step of the Whisper encoder loaders: build the encoder and copy a state dict in our
names (conv1, conv2, positions, blocks.N.{attn_norm, attn.q/k/v/o, mlp_norm, fc1, fc2}, norm)."""

from __future__ import annotations

import torch

from unique_asr.models.whisper import WhisperDims, WhisperEncoder

# our block names -> (openai-whisper, Hugging Face) names of the same tensors
BLOCK_NAMES = {
    "attn_norm": ("attn_ln", "self_attn_layer_norm"),
    "attn.q": ("attn.query", "self_attn.q_proj"),
    "attn.k": ("attn.key", "self_attn.k_proj"),
    "attn.v": ("attn.value", "self_attn.v_proj"),
    "attn.o": ("attn.out", "self_attn.out_proj"),
    "mlp_norm": ("mlp_ln", "final_layer_norm"),
    "fc1": ("mlp.0", "fc1"),
    "fc2": ("mlp.2", "fc2"),
}


def rename_blocks(sd: dict, n_layers: int, prefix: str, style: int) -> dict[str, torch.Tensor]:
    """Block tensors of `sd` (under `prefix`, naming style 0 = openai, 1 = Hugging Face) in our
    names; the k projection has no bias in Whisper (a stored one is ignored if all zeros)."""
    out = {}
    for i in range(n_layers):
        for ours, names in BLOCK_NAMES.items():
            for kind in ("weight", "bias"):
                key = f"{prefix}{i}.{names[style]}.{kind}"
                if key in sd and not (ours == "attn.k" and kind == "bias"):
                    out[f"blocks.{i}.{ours}.{kind}"] = sd[key]
    return out


def build_encoder(cfg: WhisperDims, state: dict, source: str,
                  dtype: torch.dtype = torch.float32) -> WhisperEncoder:
    """WhisperEncoder (eval mode, `dtype`) with `state` copied in; names what does not fit."""
    enc = WhisperEncoder(cfg)
    state = {k: v.float() for k, v in state.items()}
    state.setdefault("positions", enc.positions)
    missing, unexpected = enc.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{source}: weights do not fit the Whisper encoder: missing "
                         f"{missing[:8]}, unexpected {unexpected[:8]}")
    return enc.to(dtype).eval()
