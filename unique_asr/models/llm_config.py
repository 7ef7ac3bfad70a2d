"""Shape of a decoder-only LLM (LLaMA / Qwen2 / Qwen3 families) as one small dataclass.

The Decoder (decoder.py) builds from this; the speech LLM's from-scratch ModelConfig is converted
to it by `LLMConfig.from_model_config`, so pretrained and from-scratch decoders share one code path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class LLMConfig:
    hidden: int                  # model width
    layers: int
    heads: int                   # query heads
    kv_heads: int                # key/value heads (GQA: heads % kv_heads == 0)
    head_dim: int                # explicit: Qwen3 uses heads * head_dim != hidden
    ffn: int                     # SwiGLU inner width
    vocab: int
    rope_theta: float = 10000.0
    eps: float = 1e-6            # RMSNorm epsilon (all norms, including q/k norms)
    tie_embeddings: bool = True  # output head shares the input embedding matrix
    qkv_bias: bool = False       # Qwen2: bias on the q, k and v projections
    out_bias: bool = False       # attention_bias=True (LLaMA, Qwen3): output projection bias too
    qk_norm: bool = False        # Qwen3: RMSNorm over each head's q and k before RoPE
    dropout: float = 0.0

    def __post_init__(self):
        if self.heads % self.kv_heads:
            raise ValueError(f"LLMConfig: heads ({self.heads}) must be a multiple of kv_heads "
                             f"({self.kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"LLMConfig: head_dim ({self.head_dim}) must be even for RoPE")

    @classmethod
    def from_model_config(cls, cfg: Any) -> LLMConfig:
        """The decoder part of the speech LLM's ModelConfig (tied head, no biases, eps 1e-6)."""
        return cls(hidden=cfg.llm.dim, layers=cfg.llm.layers, heads=cfg.llm.heads,
                   kv_heads=cfg.llm.kv_heads, head_dim=cfg.llm.dim // cfg.llm.heads,
                   ffn=cfg.llm.ff, vocab=cfg.vocab_size, rope_theta=cfg.llm.rope_base,
                   dropout=cfg.dropout)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
