"""Whisper encoder from a CTranslate2 Whisper directory (model.bin + config.json, as written by
ct2-transformers-converter). CTranslate2 fuses each self-attention's q, k, v into one
`linear_0` (k bias stored as zeros); dims come from the tensors and `encoder/num_heads`."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from unique_asr.models.loaders.ctranslate2_bin import read_ct2_model_bin
from unique_asr.models.loaders.safetensors_dir import require_file
from unique_asr.models.loaders.whisper_common import build_encoder
from unique_asr.models.whisper import WhisperDims, WhisperEncoder


def _ct2_block(v: dict, i: int) -> dict[str, torch.Tensor]:
    p, out = f"encoder/layer_{i}/", {}
    sa, ffn = p + "self_attention/", p + "ffn/"
    q, k, vv = v[sa + "linear_0/weight"].chunk(3)
    qb, _, vb = v[sa + "linear_0/bias"].chunk(3)
    out.update({"attn.q.weight": q, "attn.q.bias": qb, "attn.k.weight": k,
                "attn.v.weight": vv, "attn.v.bias": vb,
                "attn.o.weight": v[sa + "linear_1/weight"], "attn.o.bias": v[sa + "linear_1/bias"],
                "attn_norm.weight": v[sa + "layer_norm/gamma"],
                "attn_norm.bias": v[sa + "layer_norm/beta"],
                "mlp_norm.weight": v[ffn + "layer_norm/gamma"],
                "mlp_norm.bias": v[ffn + "layer_norm/beta"]})
    for j, name in ((0, "fc1"), (1, "fc2")):
        out[f"{name}.weight"] = v[f"{ffn}linear_{j}/weight"]
        out[f"{name}.bias"] = v[f"{ffn}linear_{j}/bias"]
    return {f"blocks.{i}.{k}": t for k, t in out.items()}


def load_ct2_whisper_encoder(directory: str | Path, dtype: torch.dtype = torch.float32
                             ) -> WhisperEncoder:
    d = Path(directory)
    require_file(d / "config.json", "the CTranslate2 model configuration")
    m = read_ct2_model_bin(require_file(d / "model.bin", "the CTranslate2 weights"))
    if m.spec != "WhisperSpec":
        raise ValueError(f"{d}: model.bin holds a {m.spec!r}, expected 'WhisperSpec'")
    v = m.variables
    w1, pos = v["encoder/conv1/weight"], v["encoder/position_encodings/encodings"]
    n_layers = len({m[1] for k in v if (m := re.match(r"encoder/layer_(\d+)/", k))})
    c = WhisperDims(n_mels=w1.shape[1], n_ctx=pos.shape[0], d_model=w1.shape[0],
                             n_heads=int(v["encoder/num_heads"]), n_layers=n_layers)
    state = {"conv1.weight": w1, "conv1.bias": v["encoder/conv1/bias"],
             "conv2.weight": v["encoder/conv2/weight"], "conv2.bias": v["encoder/conv2/bias"],
             "positions": pos, "norm.weight": v["encoder/layer_norm/gamma"],
             "norm.bias": v["encoder/layer_norm/beta"]}
    for i in range(n_layers):
        state.update(_ct2_block(v, i))
    return build_encoder(c, state, str(d), dtype)
