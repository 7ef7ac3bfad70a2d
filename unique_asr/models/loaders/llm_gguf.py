"""llama.cpp GGUF files (llama architecture) into our Decoder, with the tokenizer rebuilt from the
GGUF vocabulary and merges as a byte-level BPE `tokenizers.Tokenizer`.

llama.cpp's converter stores the q/k projections of llama-arch models with each head's rows in the
interleaved (2i, 2i+1) RoPE order that rope.py uses (it undoes the Hugging Face half-split
permutation), so they load as they are; tests check this against llama.cpp's own logits.
Quantised tensors (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, ...) are dequantised with gguf.quants.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from unique_asr.models.decoder import Decoder
from unique_asr.models.llm_config import LLMConfig
from unique_asr.models.loaders.llm_hf import load_decoder_state
from unique_asr.models.loaders.tokenizer import TextTokenizer

log = logging.getLogger(__name__)

SUPPORTED_GGUF_ARCHS = ("llama",)
# GGUF token types (llama.cpp's llama_token_type): 3 = control (special), 4 = user defined
_CONTROL, _USER_DEFINED = 3, 4
# pre-tokenizer regexes by `tokenizer.ggml.pre`; the byte-level split of GPT-2 is the default
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def llm_config_from_gguf(reader) -> LLMConfig:
    """LLMConfig from the GGUF metadata (`<arch>.*` keys); tied when there is no output.weight."""
    arch = _field(reader, "general.architecture")
    if arch not in SUPPORTED_GGUF_ARCHS:
        raise ValueError(f"unsupported GGUF architecture {arch!r}; supported: "
                         f"{', '.join(SUPPORTED_GGUF_ARCHS)}")
    heads = int(_field(reader, f"{arch}.attention.head_count"))
    hidden = int(_field(reader, f"{arch}.embedding_length"))
    names = {t.name for t in reader.tensors}
    vocab = _field(reader, f"{arch}.vocab_size") or len(_field(reader, "tokenizer.ggml.tokens"))
    return LLMConfig(
        hidden=hidden, layers=int(_field(reader, f"{arch}.block_count")), heads=heads,
        kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv", heads)),
        head_dim=int(_field(reader, f"{arch}.attention.key_length", hidden // heads)),
        ffn=int(_field(reader, f"{arch}.feed_forward_length")), vocab=int(vocab),
        rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        eps=float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        tie_embeddings="output.weight" not in names,
    )


def gguf_tensor(t) -> torch.Tensor:
    """One GGUF tensor as float32 in PyTorch's [out, in] order (GGUF lists dims innermost first)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    shape = tuple(int(n) for n in reversed(t.shape))
    if t.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        arr = np.array(t.data, dtype=np.float32)  # copy: the reader memory-maps the file
    else:
        arr = dequantize(np.asarray(t.data), t.tensor_type)
    return torch.from_numpy(np.ascontiguousarray(arr).reshape(shape))


_LAYER_NAMES = {"attn_norm": "norm1", "ffn_norm": "norm2", "attn_output": "attn.o",
                "ffn_gate": "mlp.w1", "ffn_up": "mlp.w3", "ffn_down": "mlp.w2"}


def decoder_state_from_gguf(reader) -> dict[str, torch.Tensor]:
    """Our Decoder's state dict from the GGUF tensors (q/k already interleaved, see module doc)."""
    raw = {t.name: t for t in reader.tensors}
    out = {"embed.weight": gguf_tensor(raw["token_embd.weight"]),
           "norm.weight": gguf_tensor(raw["output_norm.weight"])}
    if "output.weight" in raw:
        out["lm_head.weight"] = gguf_tensor(raw["output.weight"])
    layers = sorted({int(n.split(".")[1]) for n in raw if n.startswith("blk.")})
    for i in layers:
        p = f"blk.{i}."
        for src, dst in _LAYER_NAMES.items():
            out[f"layers.{i}.{dst}.weight"] = gguf_tensor(raw[p + src + ".weight"])
        out[f"layers.{i}.attn.q.weight"] = gguf_tensor(raw[p + "attn_q.weight"])
        out[f"layers.{i}.attn.kv.weight"] = torch.cat([gguf_tensor(raw[p + "attn_k.weight"]),
                                                       gguf_tensor(raw[p + "attn_v.weight"])])
    return out


def _pre_tokenizer(kind: str | None):
    from tokenizers import pre_tokenizers as pt

    byte_level = pt.ByteLevel(add_prefix_space=False, use_regex=True)
    if kind == "smollm":  # digits one by one, then GPT-2's byte-level split
        return pt.Sequence([pt.Digits(individual_digits=True), byte_level])
    if kind in ("llama-bpe", "llama3"):
        from tokenizers import Regex

        return pt.Sequence([pt.Split(Regex(_LLAMA3_SPLIT), behavior="isolated"),
                            pt.ByteLevel(add_prefix_space=False, use_regex=False)])
    if kind not in (None, "default", "gpt2"):
        log.warning("GGUF pre-tokenizer %r not known: using GPT-2's byte-level split (text "
                    "round-trips, but segmentation may differ from the model's own)", kind)
    return byte_level


def gguf_tokenizer(reader) -> TextTokenizer:
    """Byte-level BPE tokenizer from tokenizer.ggml.{tokens, merges, token_type, *_token_id}."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    model = _field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(f"GGUF tokenizer model {model!r} is not supported (only byte-level BPE, "
                         "tokenizer.ggml.model = 'gpt2')")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                               ignore_merges=False))
    tok.pre_tokenizer = _pre_tokenizer(_field(reader, "tokenizer.ggml.pre"))
    tok.decoder = decoders.ByteLevel()
    types = _field(reader, "tokenizer.ggml.token_type") or []
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, ty in enumerate(types) if ty == _CONTROL])
    tok.add_tokens([AddedToken(tokens[i], normalized=False)
                    for i, ty in enumerate(types) if ty == _USER_DEFINED])
    bos, eos = (_field(reader, f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos"))
    return TextTokenizer(tok, None if bos is None else int(bos), None if eos is None else int(eos))


def load_gguf_llm(path: str | Path, dtype: torch.dtype = torch.float32, tokenizer: bool = True,
                  attention: str = "dense") -> tuple[Decoder, TextTokenizer | None]:
    """Decoder (eval mode, `dtype`, dequantised weights) and tokenizer of a llama-arch GGUF."""
    from gguf import GGUFReader

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    reader = GGUFReader(str(path))
    c = llm_config_from_gguf(reader)
    c.attention = attention
    dec = Decoder(c)
    load_decoder_state(dec, decoder_state_from_gguf(reader), str(path))
    tok = gguf_tokenizer(reader) if tokenizer else None
    return dec.to(dtype).eval(), tok
