"""Pretrained LLaMA / Qwen2 / Qwen3 causal LMs from a Hugging Face directory (config.json,
*.safetensors, tokenizer.json) into our Decoder.

Hugging Face applies RoPE to half-split pairs (i, i + head_dim/2); our rope.py rotates interleaved
pairs (2i, 2i+1) with the same frequency index i. Reordering each head's q and k output rows
(and their bias and q/k-norm weights) by `half_split_to_interleaved` gives identical attention
scores, since q.k is unchanged when both vectors are permuted alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from unique_asr.models.decoder import Decoder
from unique_asr.models.llm_config import LLMConfig
from unique_asr.models.loaders.safetensors_dir import read_safetensors_dir, require_file
from unique_asr.models.loaders.tokenizer import TextTokenizer, load_hf_tokenizer

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")


def half_split_to_interleaved(head_dim: int) -> torch.Tensor:
    """Index j of the interleaved layout takes element (j % 2) * head_dim/2 + j // 2 of the
    half-split layout."""
    j = torch.arange(head_dim)
    return (j % 2) * (head_dim // 2) + j // 2


def permute_heads(w: torch.Tensor, n_heads: int, head_dim: int) -> torch.Tensor:
    """Reorder the rows of a q/k projection weight [n_heads*head_dim, ...] (or bias) per head."""
    perm = half_split_to_interleaved(head_dim)
    return w.reshape(n_heads, head_dim, *w.shape[1:])[:, perm].reshape(w.shape)


def _rope_theta(cfg: dict) -> float:
    """rope_theta from a transformers v4 (top level) or v5 (rope_parameters) config; scaled RoPE
    variants are not implemented by rope.py, so they are refused."""
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise ValueError(f"RoPE scaling type {kind!r} is not supported (only plain RoPE)")
    return float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))


def llm_config_from_hf(cfg: dict) -> LLMConfig:
    """LLMConfig of a Hugging Face config.json dict (architecture must be supported)."""
    archs = cfg.get("architectures") or []
    arch = next((a for a in archs if a in SUPPORTED_ARCHITECTURES), None)
    if arch is None:
        raise ValueError(f"unsupported architecture {archs or cfg.get('model_type')!r} in "
                         f"config.json; supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    if cfg.get("mlp_bias"):
        raise ValueError("mlp_bias=True is not supported (SwiGLU without biases)")
    heads = cfg["num_attention_heads"]
    return LLMConfig(
        hidden=cfg["hidden_size"], layers=cfg["num_hidden_layers"], heads=heads,
        kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
        ffn=cfg["intermediate_size"], vocab=cfg["vocab_size"], rope_theta=_rope_theta(cfg),
        eps=float(cfg.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        qkv_bias=arch == "Qwen2ForCausalLM" or bool(cfg.get("attention_bias", False)),
        out_bias=bool(cfg.get("attention_bias", False)),  # LLaMA, Qwen3: o_proj too
        qk_norm=arch == "Qwen3ForCausalLM",
    )


def _layer_state(sd: dict, i: int, c: LLMConfig) -> dict[str, torch.Tensor]:
    """Our names for layer i's tensors, with q/k rows moved to the interleaved RoPE layout."""
    p, out = f"model.layers.{i}.", {}
    a = p + "self_attn."
    out["norm1.weight"] = sd[p + "input_layernorm.weight"]
    out["norm2.weight"] = sd[p + "post_attention_layernorm.weight"]
    out["attn.q.weight"] = permute_heads(sd[a + "q_proj.weight"], c.heads, c.head_dim)
    k = permute_heads(sd[a + "k_proj.weight"], c.kv_heads, c.head_dim)
    out["attn.kv.weight"] = torch.cat([k, sd[a + "v_proj.weight"]])
    out["attn.o.weight"] = sd[a + "o_proj.weight"]
    if c.out_bias:
        out["attn.o.bias"] = sd[a + "o_proj.bias"]
    if c.qkv_bias:
        out["attn.q.bias"] = permute_heads(sd[a + "q_proj.bias"], c.heads, c.head_dim)
        kb = permute_heads(sd[a + "k_proj.bias"], c.kv_heads, c.head_dim)
        out["attn.kv.bias"] = torch.cat([kb, sd[a + "v_proj.bias"]])
    if c.qk_norm:
        perm = half_split_to_interleaved(c.head_dim)
        out["attn.q_norm.weight"] = sd[a + "q_norm.weight"][perm]
        out["attn.k_norm.weight"] = sd[a + "k_norm.weight"][perm]
    m = p + "mlp."
    out["mlp.w1.weight"] = sd[m + "gate_proj.weight"]
    out["mlp.w3.weight"] = sd[m + "up_proj.weight"]
    out["mlp.w2.weight"] = sd[m + "down_proj.weight"]
    return {f"layers.{i}.{k}": v for k, v in out.items()}


def decoder_state_from_hf(sd: dict, c: LLMConfig) -> dict[str, torch.Tensor]:
    """Our Decoder's state dict from a Hugging Face *ForCausalLM state dict."""
    out = {"embed.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"]}
    for i in range(c.layers):
        out.update(_layer_state(sd, i, c))
    if not c.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    return out


def load_decoder_state(dec: Decoder, state: dict, source: str) -> Decoder:
    """Copy `state` into `dec`, naming any missing or unexpected tensor of `source`."""
    missing, unexpected = dec.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{source}: weights do not fit the decoder: missing {missing[:8]}, "
                         f"unexpected {unexpected[:8]}")
    return dec


def load_hf_llm(directory: str | Path, dtype: torch.dtype = torch.float32, tokenizer: bool = True,
                attention: str = "dense") -> tuple[Decoder, TextTokenizer | None]:
    """Decoder (eval mode, `dtype`) and tokenizer of a Hugging Face LLaMA/Qwen2/Qwen3 directory."""
    d = Path(directory)
    cfg = json.loads(require_file(d / "config.json", "the model configuration").read_text())
    c = llm_config_from_hf(cfg)
    c.attention = attention
    tok = load_hf_tokenizer(d) if tokenizer else None
    sd = read_safetensors_dir(d)
    try:
        state = decoder_state_from_hf(sd, c)
    except KeyError as e:
        raise ValueError(f"{d}: checkpoint lacks tensor {e.args[0]!r}") from None
    dec = Decoder(c)
    load_decoder_state(dec, {k: v.float() for k, v in state.items()}, str(d))
    return dec.to(dtype).eval(), tok
