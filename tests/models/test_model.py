"""Model shapes, masks (causal decoder, chunked encoder, padding), decoding consistency, CTC."""

from __future__ import annotations

import math

import pytest
import torch

from unique_asr.models import CheckpointMismatchError, ModelConfig, build_model, load_checkpoint
from unique_asr.models.attention import TRAIN_ATTENTION, TrainAttentionConfig
from unique_asr.models.ctc import ctc_greedy
from unique_asr.models.encoder import ChunkedSelfAttention, chunk_window_mask, subsampled_lengths


def small_cfg(encoder: dict | None = None, llm: dict | None = None, **kw) -> ModelConfig:
    """A small model; `encoder` / `llm` override keys of model.encoder / model.llm."""
    enc = {"dim": 32, "layers": 2, "heads": 2, "chunk": 4, "left_chunks": 2, "subsample": "conv2d",
           "subsample_channels": 8, "zero_init": False, **(encoder or {})}
    dec = {"dim": 64, "layers": 2, "heads": 4, "kv_heads": 1, "ff": 96, **(llm or {})}
    base = {"n_text": 30, "dropout": 0.0, "cmn_window": 0, "ctc_weight": 0.3, "ctc_max_s": 0.0,
            "ctc_upsample": 1, "ctc_segments": False, **kw}
    return ModelConfig.from_dict({**base, "encoder": enc, "llm": dec})


@pytest.fixture(params=["conv2d", "conv1d"])
def model(request):
    torch.manual_seed(0)
    return build_model(small_cfg(encoder={"subsample": request.param})).eval()


def test_encode_shapes_and_lengths(model):
    feats = torch.randn(3, 403, 80)
    lens = torch.tensor([403, 250, 97])
    audio, alens = model.encode(feats, lens)
    enc_lens = ((lens - 1) // 2 - 1) // 2
    assert torch.equal(alens, enc_lens // 2)
    assert audio.shape == (3, int(alens.max()), 64)
    _, _, logp, el = model.encode_with_ctc(feats, lens)
    assert logp.shape[-1] == model.cfg.n_text + 1 and torch.equal(el, enc_lens)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(()), atol=1e-4)


def test_padding_does_not_change_outputs(model):
    feats = torch.randn(2, 600, 80)
    lens = torch.tensor([600, 333])
    audio, alens = model.encode(feats, lens)
    alone, alone_lens = model.encode(feats[1:, :333], lens[1:])
    assert int(alone_lens[0]) == int(alens[1])
    n = int(alens[1])
    torch.testing.assert_close(audio[1, :n], alone[0, :n], atol=1e-5, rtol=1e-4)


def test_sliced_subsampling_is_exact(model):
    x = torch.randn(1, 1003, 80)
    full = model.encoder.subsample(x, 0)
    sliced = model.encoder.subsample(x, 37)
    torch.testing.assert_close(full, sliced, atol=1e-5, rtol=1e-5)


def test_chunked_attention_matches_explicit_mask():
    torch.manual_seed(1)
    cfg = small_cfg(encoder={"chunk": 3, "left_chunks": 1})
    att = ChunkedSelfAttention(cfg).eval()
    T, lens = 11, torch.tensor([11, 7])
    x = torch.randn(2, T, 32)
    mask = chunk_window_mask(lens, T, 3, 1)
    y = att(x, mask)
    # reference: full T x T attention, key j visible to query i iff same or previous chunk, j < len
    from unique_asr.models.rope import apply_rope, rope_angles

    q, k, v = att.qkv(x).view(2, T, 3, 2, 16).permute(2, 0, 3, 1, 4)
    cos, sin = rope_angles(torch.arange(T), 16, att.base)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    ci = torch.arange(T) // 3
    allowed = (ci[None, :] <= ci[:, None]) & (ci[None, :] >= ci[:, None] - 1)
    for b in range(2):
        m = allowed & (torch.arange(T)[None, :] < lens[b])
        s = (q[b] @ k[b].transpose(-1, -2)) / 4.0
        ref = torch.softmax(s.masked_fill(~m, float("-inf")), -1) @ v[b]
        ref = att.o(ref.transpose(0, 1).reshape(T, 32))
        n = int(lens[b])
        torch.testing.assert_close(y[b, :n], ref[:n], atol=1e-5, rtol=1e-4)
    # the chunk structure really limits context: a far-away key change does not leak
    x2 = x.clone()
    x2[:, 0] += 5.0
    y2 = att(x2, mask)
    assert torch.allclose(y[:, 6:], y2[:, 6:], atol=1e-6)  # chunk 2+ cannot see chunk 0
    assert not torch.allclose(y[:, :3], y2[:, :3])


def test_decoder_is_causal_and_prefill_steps_match_forward(model):
    torch.manual_seed(2)
    feats = torch.randn(2, 500, 80)
    flens = torch.tensor([500, 300])
    tokens = torch.randint(0, 30, (2, 7))
    tlens = torch.tensor([7, 4])
    with torch.no_grad():
        audio, alens = model.encode(feats, flens)
        x, tgt = model._pack(audio, alens, tokens, tlens)
        h = model.decoder.hidden(x, torch.arange(x.shape[1]))
        full = model.decoder.logits(h)
        # causality: changing a later input leaves earlier outputs alone
        x2 = x.clone()
        x2[:, 20:] += 1.0
        h2 = model.decoder.hidden(x2, torch.arange(x.shape[1]))
        torch.testing.assert_close(h[:, :20], h2[:, :20])
        assert not torch.allclose(h[:, 20:], h2[:, 20:])
        # targets: text then eos right after the task token
        b0 = int(alens[0])
        assert tgt[0, b0 - 1] == -100 and torch.equal(tgt[0, b0:b0 + 7], tokens[0])
        assert tgt[0, b0 + 7] == model.cfg.eos_id
        cache = model.new_cache(2, x.shape[1] + 4)
        steps = [model.prefill(audio, alens, cache)]
        for i in range(4):
            steps.append(model.decode_step(tokens[:, i], cache))
        assert torch.equal(cache.lens, alens + 5)
    for b in range(2):
        for i in range(5):
            torch.testing.assert_close(steps[i][b], full[b, int(alens[b]) + i], atol=1e-4,
                                       rtol=1e-4)


def test_beam_reorder_and_cache_limits(model):
    with torch.no_grad():
        audio, alens = model.encode(torch.randn(2, 300, 80), torch.tensor([300, 200]))
        cache = model.new_cache(2, int(alens.max()) + 2)
        model.prefill(audio, alens, cache)
        cache.reorder(torch.tensor([1, 1]))
        assert torch.equal(cache.lens, torch.tensor([int(alens[1]) + 1] * 2))
        small = model.new_cache(2, 3)
        with pytest.raises(ValueError, match="max_len"):
            model.prefill(audio, alens, small)


def test_gqa_rope_and_tied_embeddings():
    cfg = ModelConfig(n_text=100)  # defaults = tiny sizes
    m = build_model(cfg)
    assert cfg.llm.heads // cfg.llm.kv_heads == 4
    att = m.decoder.layers[0].attn
    dh = cfg.llm.dim // cfg.llm.heads
    assert att.kv.out_features == 2 * cfg.llm.kv_heads * dh
    # slowest RoPE frequency turns less than one revolution over 64K positions
    assert 65536 * cfg.llm.rope_base ** (-(dh - 2) / dh) < 2 * math.pi
    h = torch.randn(1, 3, cfg.llm.dim)
    torch.testing.assert_close(m.decoder.logits(h), h @ m.decoder.embed.weight.T)
    assert cfg.vocab_size == 102 and cfg.task_id == 100 and cfg.eos_id == 101


def test_ctc_head_loss_and_greedy(model):
    feats, flens = torch.randn(2, 400, 80), torch.tensor([400, 300])
    tokens, tlens = torch.randint(0, 30, (2, 5)), torch.tensor([5, 3])
    model.train()
    out = model(feats, flens, tokens, tlens)
    assert torch.isfinite(out["loss"]) and float(out["ctc_sum"]) > 0
    assert int(out["ntokens"]) == 5 + 3 + 2
    out["loss"].backward()
    assert model.ctc.proj.weight.grad.abs().sum() > 0
    # greedy CTC: merge repeats, drop blanks
    logp = torch.full((1, 6, 4), -10.0)
    for t, c in enumerate([1, 1, 3, 2, 3, 3]):  # 3 = blank
        logp[0, t, c] = 0.0
    assert ctc_greedy(logp, torch.tensor([6]), blank=3) == [[1, 2]]
    # ctc_max_s: long items skip CTC but the head stays in the graph
    m2 = build_model(small_cfg(ctc_max_s=1.0)).train()
    out2 = m2(feats, flens, tokens, tlens)
    assert float(out2["ctc_sum"]) == 0.0
    out2["loss"].backward()
    assert m2.ctc.proj.weight.grad is not None


def test_attention_registry_and_config_errors():
    assert set(TRAIN_ATTENTION) == {"dense", "unique_soft", "unique_hard"}
    with pytest.raises(ValueError, match=r"train\.attention\.kind='nope'.*unique_soft"):
        TrainAttentionConfig(kind="nope").validate()
    with pytest.raises(ValueError, match=r"train\.attention\.tau"):
        TrainAttentionConfig(tau=0.0).validate()
    m = build_model(small_cfg())
    assert m.train_attention == TrainAttentionConfig()
    m.set_train_attention(TrainAttentionConfig(kind="unique_soft", budget=16))
    assert {layer.attn.train_attention.kind for layer in m.decoder.layers} == {"unique_soft"}
    with pytest.raises(ValueError, match=r"model.llm.heads=4 must be a multiple of model.llm.kv"):
        ModelConfig.from_dict({"llm": {"heads": 4, "kv_heads": 3}})
    with pytest.raises(ValueError, match=r"unknown config key model.enc_dimm; valid keys of model: name, "):
        ModelConfig.from_dict({"enc_dimm": 3})


def test_checkpoint_from_other_config_is_rejected(tmp_path):
    m = build_model(small_cfg())
    path = tmp_path / "ck.pt"
    torch.save({"model": m.state_dict(), "model_cfg": m.cfg.to_dict()}, path)
    m2, cfg = load_checkpoint(path, model_cfg=small_cfg().to_dict(), overrides={"dropout": 0.0})
    assert cfg["encoder"]["dim"] == 32 and not m2.training
    with pytest.raises(CheckpointMismatchError) as e:
        load_checkpoint(path, model_cfg=small_cfg(encoder={"dim": 48}, llm={"layers": 3}).to_dict())
    assert "encoder.dim: checkpoint=32 config=48" in str(e.value) and "llm.layers" in str(e.value)
    bad = small_cfg(llm={"layers": 3})
    torch.save({"model": m.state_dict(), "model_cfg": bad.to_dict()}, path)
    with pytest.raises(CheckpointMismatchError, match="missing"):
        load_checkpoint(path)


def test_checkpoint_with_removed_config_keys_loads_with_a_warning(tmp_path, caplog):
    """A checkpoint saved while an option existed that this version has removed (top-level and
    inside model.encoder) still loads, naming the ignored keys and their values."""
    torch.manual_seed(0)
    m = build_model(small_cfg())
    cfg = m.cfg.to_dict()
    cfg["interleave_s"] = 10.0
    cfg["encoder"]["old_option"] = 3
    path = tmp_path / "ck.pt"
    torch.save({"model": m.state_dict(), "model_cfg": cfg}, path)
    with caplog.at_level("WARNING"):
        m2, cfg2 = load_checkpoint(path)
    assert "model.interleave_s=10.0" in caplog.text and "model.encoder.old_option=3" in caplog.text
    assert "interleave_s" not in cfg2 and "old_option" not in cfg2["encoder"]
    for a, b in zip(m.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


def test_subsampled_lengths():
    assert subsampled_lengths(torch.tensor([7, 8, 100])).tolist() == [1, 1, 24]


def test_ctc_upsample_emits_more_frames_and_trains():
    """model.ctc_upsample=2: two CTC frames per encoder frame, with lengths and a finite loss
    whose gradient reaches the head."""
    torch.manual_seed(0)
    m = build_model(small_cfg(ctc_upsample=2, encoder={"subsample": "conv1d"}))
    feats, lens = torch.randn(2, 203, 80), torch.tensor([203, 150])
    enc_lens = ((lens - 1) // 2 - 1) // 2
    m.eval()
    _, _, logp, ctc_lens = m.encode_with_ctc(feats, lens)
    assert torch.equal(ctc_lens, 2 * enc_lens) and logp.shape[1] == 2 * int(enc_lens.max())
    m.train()
    # 40 labels in 49 encoder frames: infeasible at one frame each with repeats, feasible at two
    tokens = torch.tensor([[1, 1, 2, 2] * 10, [3, 3] * 20])
    out = m(feats, lens, tokens, torch.tensor([40, 30]))
    assert torch.isfinite(out["ctc_sum"]) and float(out["ctc_sum"]) > 0
    out["loss"].backward()
    assert m.ctc.proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="ctc_upsample"):
        build_model(small_cfg(ctc_upsample=0))


def test_intermediate_ctc_mixes_the_loss_but_logs_the_final_ctc():
    """model.inter_ctc_layers: the training loss adds CTC on block outputs; the logged ctc_sum
    stays the final layer's (equal to a model without taps and the same weights)."""
    torch.manual_seed(0)
    plain = build_model(small_cfg(encoder={"subsample": "conv1d"}, ctc_weight=1.0, ce_weight=0.0))
    tapped = build_model(small_cfg(encoder={"subsample": "conv1d"}, ctc_weight=1.0, ce_weight=0.0,
                                   inter_ctc_layers=[1], inter_ctc_weight=0.5))
    tapped.load_state_dict(plain.state_dict())
    for mod in (plain, tapped):
        mod.train()
        mod.specaug.cfg = small_cfg(specaug_freq_masks=0, specaug_time_masks=0)
    feats, lens = torch.randn(2, 203, 80), torch.tensor([203, 150])
    tokens, tlens = torch.randint(0, 30, (2, 12)), torch.tensor([12, 9])
    a, b = plain(feats, lens, tokens, tlens), tapped(feats, lens, tokens, tlens)
    torch.testing.assert_close(a["ctc_sum"], b["ctc_sum"])
    assert abs(float(a["loss_sum"]) - float(b["loss_sum"])) > 1e-3
    b["loss"].backward()
    g_first = sum(p.grad.abs().sum() for p in tapped.encoder.blocks[0].parameters())
    assert g_first > 0


def test_encoder_zero_init_blocks_start_as_layernorm():
    """model.enc_zero_init: every residual branch's last layer is zero, so a block maps x to its
    output LayerNorm of x; training moves them (the branch weights get gradients)."""
    torch.manual_seed(0)
    m = build_model(small_cfg(encoder={"zero_init": True, "subsample": "conv1d"}))
    blk = m.encoder.blocks[0]
    x = torch.randn(2, 12, 32)
    valid = torch.ones(2, 12, 1)
    mask = chunk_window_mask(torch.tensor([12, 12]), 12, 4, 2)
    torch.testing.assert_close(blk(x, mask, valid), blk.norm_out(x))
    m.train()
    out = m(torch.randn(2, 203, 80), torch.tensor([203, 150]), torch.randint(0, 30, (2, 12)),
            torch.tensor([12, 9]))
    out["loss"].backward()
    assert blk.att.o.weight.grad.abs().sum() > 0 and blk.conv.pw2.weight.grad.abs().sum() > 0


def test_text_input_noise_changes_inputs_not_targets():
    """model.text_input_noise: in training a share of the decoder's input text tokens is random
    (the targets and the audio are untouched); in eval mode inputs are the text."""
    torch.manual_seed(0)
    m = build_model(small_cfg(text_input_noise=0.5, encoder={"subsample": "conv1d"}))
    audio, alens = torch.randn(2, 7, 64), torch.tensor([7, 5])
    tokens, tlens = torch.randint(0, 30, (2, 40)), torch.tensor([40, 33])
    m.eval()
    x_clean, tgt_clean = m._pack(audio, alens, tokens, tlens)
    m.train()
    x_noisy, tgt_noisy = m._pack(audio, alens, tokens, tlens)
    assert torch.equal(tgt_clean, tgt_noisy)
    changed = (x_clean != x_noisy).any(-1)  # [B, L] positions whose input embedding changed
    for b in range(2):
        a, n = int(alens[b]), int(tlens[b])
        assert not changed[b, : a + 1].any()  # audio and the task token
        share = changed[b, a + 1: a + 1 + n].float().mean()
        assert 0.2 < share < 0.7  # ~0.5 x (1 - 1/30) of the text


def test_training_only_keys_do_not_invalidate_a_checkpoint():
    """A checkpoint from before enc_zero_init / text_input_noise / inter_ctc_* existed (keys
    missing) or trained with other values still fits: they do not change the weights' meaning;
    an architecture key (ctc_upsample) still does."""
    from unique_asr.models.checkpoint import check_config

    cur = small_cfg(encoder={"zero_init": True}, text_input_noise=0.3, inter_ctc_layers=[1]).to_dict()
    old = {k: v for k, v in cur.items()
           if k not in ("enc_zero_init", "text_input_noise", "inter_ctc_layers")}
    check_config(old, cur, "old.pt")
    with pytest.raises(CheckpointMismatchError, match="ctc_upsample"):
        check_config(old, {**cur, "ctc_upsample": 2}, "old.pt")


def test_decoder_zero_init_layers_start_as_identity():
    """model.dec_zero_init: each decoder layer maps x to x at initialisation (attention output
    and SwiGLU down-projection are zero), and those weights get gradients."""
    torch.manual_seed(0)
    m = build_model(small_cfg(llm={"zero_init": True}, encoder={"subsample": "conv1d"}))
    x = torch.randn(2, 9, 64)
    pos = torch.arange(9)
    torch.testing.assert_close(m.decoder.hidden(x, pos), m.decoder.norm(x))
    m.train()
    out = m(torch.randn(2, 203, 80), torch.tensor([203, 150]), torch.randint(0, 30, (2, 12)),
            torch.tensor([12, 9]))
    out["loss"].backward()
    layer = m.decoder.layers[0]
    assert layer.attn.o.weight.grad.abs().sum() > 0 and layer.mlp.w2.weight.grad.abs().sum() > 0


def test_frequency_warp_moves_formants_and_keeps_the_edges():
    from unique_asr.models.frontend import warp_frequency

    F = 80
    bins = torch.arange(F, dtype=torch.float32)
    peak = torch.exp(-0.5 * ((bins - 20.0) / 2.0) ** 2)               # one "formant" at bin 20
    x = torch.stack([peak, peak, peak])[:, None, :].expand(3, 7, F).contiguous()
    y = warp_frequency(x, 0.0, factors=torch.tensor([1.0, 1.2, 0.85]))
    assert torch.allclose(y[0], x[0], atol=1e-6)                        # factor 1: identity
    assert int(y[1, 0].argmax()) == 24 and int(y[2, 0].argmax()) == 17  # stretched / squeezed
    assert torch.allclose(y[:, :, -1], x[:, :, -1]) and torch.allclose(y[:, :, 0], x[:, :, 0])
    assert torch.equal(y[1, 0], y[1, 6])                                # one factor per window
    ramp = bins[None, None, :].expand(2, 1, F)                          # the source positions
    src = warp_frequency(ramp, 0.0, factors=torch.tensor([1.2, 0.85]))
    assert bool((src[:, 0, 1:] > src[:, 0, :-1]).all())                 # monotone, no folding
    assert torch.allclose(src[:, 0, -1], torch.full((2,), F - 1.0))


def test_frequency_warp_only_while_training():
    cfg = ModelConfig(n_text=10, specaug_freq_warp=0.2)
    from unique_asr.models.frontend import SpecAugment

    aug = SpecAugment(cfg)
    x = torch.randn(4, 9, 80)
    aug.eval()
    assert torch.equal(aug.warp(x), x)
    aug.train()
    assert not torch.allclose(aug.warp(x), x)
    aug.cfg = ModelConfig(n_text=10)                                    # default: off
    assert torch.equal(aug.warp(x), x)


def test_sliding_cmn_matches_a_loop_and_removes_a_channel_offset():
    from unique_asr.models.frontend import sliding_cmn

    torch.manual_seed(0)
    x = torch.randn(2, 50, 6)
    lens = torch.tensor([50, 31])
    y = sliding_cmn(x, lens, 11)
    for b in range(2):
        n = int(lens[b])
        for t in range(n):
            lo, hi = max(0, t - 5), min(n, t + 6)
            torch.testing.assert_close(y[b, t], x[b, t] - x[b, lo:hi].mean(0))
    assert torch.equal(y[1, 31:], torch.zeros(19, 6))                   # padding stays zero
    tilt = torch.linspace(-3, 3, 6)                                     # a per-bin channel offset
    torch.testing.assert_close(sliding_cmn(x + tilt, lens, 11)[0], y[0], atol=1e-5, rtol=0)
    assert torch.equal(sliding_cmn(x, lens, 0), x)                      # 0 = off


def test_sliding_cmn_is_applied_in_training_and_decoding():
    cfg = small_cfg(cmn_window=40, encoder={"layers": 1}, llm={"layers": 1})
    m = build_model(cfg).eval()
    feats = torch.randn(1, 120, 80)
    offset = torch.linspace(-4, 4, 80)                                  # the same speech, another tilt
    with torch.no_grad():
        a, _ = m.encode(feats, torch.tensor([120]))
        b, _ = m.encode(feats + offset, torch.tensor([120]))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    m.cfg.cmn_window = 0
    with torch.no_grad():
        c, _ = m.encode(feats + offset, torch.tensor([120]))
    assert not torch.allclose(a, c, atol=1e-2)


def test_ctc_segments_score_each_sentence_on_its_own_frames():
    """model.ctc_segments: one sentence spanning the whole window gives the whole-window CTC;
    two sentences give the sum of the CTCs of their own frame ranges (computed by hand)."""
    from unique_asr.training.data import collate_segments

    torch.manual_seed(0)
    m = build_model(small_cfg(encoder={"subsample": "conv1d"}, ctc_weight=1.0, ce_weight=0.0,
                              ctc_segments=True, ctc_segment_margin_s=0.0,
                              specaug_freq_masks=0, specaug_time_masks=0)).eval()
    feats, lens = torch.randn(2, 403, 80), torch.tensor([403, 403])
    tokens, tlens = torch.randint(0, 30, (2, 12)), torch.tensor([12, 9])
    whole = m(feats, lens, tokens, tlens)["ctc_sum"]
    enc_lens = ((lens - 1) // 2 - 1) // 2                                # 99 frames = 3.96 s
    one = collate_segments([(0, 0.0, 4.0, tokens[0].tolist()), (1, 0.0, 4.0, tokens[1, :9].tolist())])
    torch.testing.assert_close(m(feats, lens, tokens, tlens, ctc_segments=one)["ctc_sum"], whole)
    # window 0 as two sentences: frames [0, 50) and [50, 99) (times in seconds at 25 frames/s)
    two = collate_segments([(0, 0.0, 2.0, tokens[0, :5].tolist()), (0, 2.0, 4.0, tokens[0, 5:].tolist())])
    got = m(feats, lens, tokens, tlens, ctc_segments=two)["ctc_sum"]
    with torch.no_grad():
        enc, _ = m._encode(feats, lens)
        ref = sum(m.ctc.loss(m.ctc.logprobs(enc[:1, a:b]), torch.tensor([b - a]),
                             tokens[:1, u:v], torch.tensor([v - u]))
                  for a, b, u, v in ((0, 50, 0, 5), (50, int(enc_lens[0]), 5, 12)))
    torch.testing.assert_close(got, ref)
    m.train()
    out = m(feats, lens, tokens, tlens, ctc_segments=two)
    out["loss"].backward()
    assert m.ctc.proj.weight.grad.abs().sum() > 0


def test_sentence_spans_split_a_window_text():
    from unique_asr.training.data import sentence_spans

    text = "hello there general kenobi"
    spans = ((0.5, 1.2, 11), (1.6, 3.0, 14))
    assert sentence_spans(text, spans) == [(0.5, 1.2, "hello there"), (1.6, 3.0, "general kenobi")]
    assert sentence_spans(text, ()) == []
