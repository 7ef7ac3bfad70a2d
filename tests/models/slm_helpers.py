"""Tiny random pretrained parts for the speech-LLM tests: a Whisper encoder and a LLaMA with a
byte-level BPE tokenizer, saved in Hugging Face format."""

from __future__ import annotations

import math
from pathlib import Path

import torch

TEXTS = ["the cat sat on the mat", "a dog ate the hat", "the red fox ran far",
         "we see a big blue sea"]


def save_tiny_whisper(path: Path, d_model: int = 32) -> Path:
    import transformers

    torch.manual_seed(0)
    cfg = transformers.WhisperConfig(d_model=d_model, encoder_layers=2, encoder_attention_heads=4,
                                     decoder_layers=1, decoder_attention_heads=4,
                                     encoder_ffn_dim=4 * d_model, decoder_ffn_dim=64, vocab_size=64,
                                     num_mel_bins=80, pad_token_id=0, bos_token_id=1,
                                     eos_token_id=2, decoder_start_token_id=3,
                                     suppress_tokens=None, begin_suppress_tokens=None)
    transformers.WhisperModel(cfg).save_pretrained(path)
    return path


def save_tiny_llama(path: Path, vocab: int = 300) -> Path:
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=96, vocab_size=vocab,
                                   bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    transformers.LlamaForCausalLM(cfg).save_pretrained(path)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXTS * 10 + ["Transcription:\n"], trainer)
    tok.save(str(path / "tokenizer.json"))
    return path


def toy_audio(seconds: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * 16000)) / 16000
    f0 = 200 + 60 * seed
    return 0.3 * torch.sin(2 * math.pi * f0 * t) + 0.02 * torch.randn(t.shape, generator=g)
