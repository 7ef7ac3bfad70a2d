"""The pretrained decoder of model.llm=pretrained: loaded from its source, RoPE base overridden
if asked, then frozen (in model.llm.dtype), given LoRA adapters, or left fully trainable."""

from __future__ import annotations

import torch

from unique_asr.models.attention import TrainAttentionConfig
from unique_asr.models.config import PretrainedLLMConfig
from unique_asr.models.loaders.pretrained import load_llm
from unique_asr.models.lora import add_lora


def build_pretrained_decoder(cfg: PretrainedLLMConfig,
                             train_attention: TrainAttentionConfig | None = None):
    """(Decoder, TextTokenizer) of cfg.source, with cfg.finetune applied."""
    dec, tok = load_llm(cfg.source)
    if tok.eos_id is None:
        raise ValueError(f"model.llm.source={cfg.source!r}: its tokenizer has no end-of-text "
                         "token (eos), which ends every transcript")
    if cfg.rope_theta:
        dec.llm.rope_theta = float(cfg.rope_theta)
    dec.set_train_attention(train_attention or TrainAttentionConfig())
    if cfg.finetune != "full":
        dec.requires_grad_(False)
        dec.to(getattr(torch, cfg.dtype))
    if cfg.finetune == "lora":
        add_lora(dec, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha)
    return dec.train(), tok
