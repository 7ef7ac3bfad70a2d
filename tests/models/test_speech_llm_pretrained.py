"""The speech LLM from pretrained parts (model.encoder=whisper, model.llm=pretrained), built
from a tiny random Whisper and a tiny random LLaMA in Hugging Face format."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from unique_asr.models.checkpoint import CheckpointMismatchError, build_model
from unique_asr.models.config import ModelConfig
from unique_asr.models.lora import LoRALinear
from unique_asr.models.whisper_audio import whisper_log_mel

pytest.importorskip("transformers")
from slm_helpers import TEXTS, save_tiny_llama, save_tiny_whisper, toy_audio


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("slm")
    return save_tiny_whisper(root / "whisper"), save_tiny_llama(root / "llama")


def _cfg(parts, **kw) -> ModelConfig:
    whisper, llama = parts
    enc = {"kind": "whisper", "source": str(whisper), "dim": 32, **kw.pop("encoder", {})}
    llm = {"kind": "pretrained", "source": str(llama), **kw.pop("llm", {})}
    d = {**ModelConfig().to_dict(), "encoder": enc, "llm": llm, "stack": 4, "ctc_weight": 0.3,
         "ctc_segments": False, **kw}
    return ModelConfig.from_dict(d)


def _batch(model, n: int = 2, seconds: float = 2.0):
    mels = [whisper_log_mel(toy_audio(seconds - 0.3 * i, i)) for i in range(n)]
    lens = torch.tensor([m.shape[0] for m in mels])
    feats = torch.zeros(n, int(lens.max()), 80)
    for i, m in enumerate(mels):
        feats[i, : m.shape[0]] = m
    toks = [model.tokenizer.encode(TEXTS[i]) for i in range(n)]
    tlens = torch.tensor([len(t) for t in toks])
    tokens = torch.zeros(n, int(tlens.max()), dtype=torch.long)
    for i, t in enumerate(toks):
        tokens[i, : len(t)] = torch.tensor(t)
    return feats, lens, tokens, tlens


def test_geometry_and_token_ids(parts):
    model = build_model(_cfg(parts))
    assert model.frames_per_token == 8 and model.audio_token_seconds == pytest.approx(0.08)
    assert model.audio_tokens(200) == 25
    assert model.eos_id == model.tokenizer.eos_id == 2
    assert model.prompt_ids.tolist() == model.tokenizer.encode("Transcription:\n")
    cached = build_model(_cfg(parts, encoder={"cached": True}))
    assert cached.frames_per_token == 4 and cached.cfg.input_dim == 32
    assert cached.audio_token_seconds == pytest.approx(0.08) and cached.audio_tokens(100) == 25


def test_frozen_loss_finite_and_decreasing(parts):
    torch.manual_seed(0)
    model = build_model(_cfg(parts))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("projector.", "ctc.")) for n in trainable)
    feats, lens, tokens, tlens = _batch(model)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    model.train()
    for _ in range(6):
        out = model(feats, lens, tokens, tlens)
        assert torch.isfinite(out["loss"]) and out["ctc_sum"] > 0
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < losses[0]
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is None for p in model.decoder.parameters())


def test_lora_and_trainable_encoder_layers(parts):
    model = build_model(_cfg(parts, llm={"finetune": "lora", "lora_rank": 4},
                             encoder={"trainable_layers": 1}))
    wrapped = [m for m in model.decoder.modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == 2 * 6
    dec = {n for n, p in model.decoder.named_parameters() if p.requires_grad}
    assert dec and all(n.endswith(("lora_a", "lora_b")) for n in dec)
    enc = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    assert enc and all(n.startswith(("whisper.blocks.1.", "whisper.norm.")) for n in enc)
    feats, lens, tokens, tlens = _batch(model)
    model.train()
    model(feats, lens, tokens, tlens)["loss"].backward()
    assert all(p.grad is not None for n, p in model.decoder.named_parameters() if n in dec)
    assert model.encoder.whisper.blocks[0].fc1.weight.grad is None
    assert model.encoder.whisper.blocks[1].fc1.weight.grad is not None


def test_sentence_ctc_targets_are_the_window_tokens(parts):
    """The per-sentence CTC targets of a window (model.ctc_segments) are its decoder targets cut
    at the sentence starts: with a byte-level BPE a later sentence's first word keeps its space
    token, so CTC does not teach words glued to the sentence before."""
    from unique_asr.training.data import WindowBatcher

    cut = SimpleNamespace(id="w", start=0.0, duration=3.0, custom={
        "rec": "r", "text": "hello there a general kenobi",
        "spans": [(0.1, 1.0, 11), (1.2, 2.9, 16)]})
    tok = build_model(_cfg(parts)).tokenizer
    out = WindowBatcher({"r": torch.zeros(300, 80)}, tok, with_segments=True,
                        frame_shift=0.01)([cut])
    seg = out["ctc_segments"]
    pieces = [seg["tokens"][k, : seg["token_lens"][k]].tolist() for k in range(2)]
    assert pieces[0] + pieces[1] == out["tokens"][0, : out["token_lens"][0]].tolist()
    assert pieces[1] != tok.encode("a general kenobi")  # the space is what differs


def test_pretrained_weights_train_at_the_scaled_rate(parts):
    """train.pretrained_lr_scale: Whisper's trainable block trains at lr * scale, the projector,
    CTC head and LoRA adapters at lr; decay only on matrices; no frozen weight in any group."""
    from unique_asr.training.schedule import make_optimizer

    model = build_model(_cfg(parts, llm={"finetune": "lora", "lora_rank": 4},
                             encoder={"trainable_layers": 1}))
    opt = make_optimizer(model, 1e-3, 0.01, pretrained_lr_scale=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    rate = {names[id(p)]: (g["lr"], g["weight_decay"]) for g in opt.param_groups
            for p in g["params"]}
    assert set(rate) == {n for n, p in model.named_parameters() if p.requires_grad}
    enc = {n for n in rate if n.startswith("encoder.")}
    assert enc and all(rate[n][0] == pytest.approx(1e-4) for n in enc)
    assert all(rate[n][0] == 1e-3 for n in set(rate) - enc)
    assert any("lora_" in n for n in rate) and any(n.startswith("projector.") for n in rate)
    assert all((rate[n][1] > 0) == (p.dim() >= 2) for n, p in model.named_parameters()
               if n in rate)
    frozen = build_model(_cfg(parts, llm={"finetune": "lora", "lora_rank": 4}))
    assert len(make_optimizer(frozen, 1e-3, 0.01, pretrained_lr_scale=0.1).param_groups) == 2
    with pytest.raises(ValueError, match="pretrained_lr_scale"):
        make_optimizer(frozen, 1e-3, 0.01, pretrained_lr_scale=0.0)


def test_merged_lora_decodes_as_the_adapters_do(parts):
    """merge_lora (what decoding's ready() does) folds B A into the base weights: the same
    next-token logits from prefill and a cached step, and no adapter left."""
    from unique_asr.decoding.export import ready

    torch.manual_seed(0)
    model = build_model(_cfg(parts, llm={"finetune": "lora", "lora_rank": 4})).eval()
    for m in model.decoder.modules():
        if isinstance(m, LoRALinear):  # trained adapters: B is no longer zero
            torch.nn.init.normal_(m.lora_b, std=0.05)
    feats, lens, _, _ = _batch(model)

    def logits(m):
        with torch.no_grad():
            audio, alens = m.encode(feats, lens)
            cache = m.new_cache(2, int(alens.max()) + 8)
            first = m.prefill(audio, alens, cache)
            return first, m.decode_step(first.argmax(-1), cache)

    want = logits(model)
    merged = ready(model, "cpu", "float32")
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    for got, ref in zip(logits(merged), want):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_bfloat16_frozen_weights_train_float32_adapters(parts):
    torch.manual_seed(0)
    model = build_model(_cfg(parts, llm={"finetune": "lora", "lora_rank": 4,
                                         "dtype": "bfloat16"}))
    frozen = [p for p in model.decoder.parameters() if not p.requires_grad]
    adapters = [p for p in model.decoder.parameters() if p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    assert adapters and all(p.dtype == torch.float32 for p in adapters)
    ref = build_model(_cfg(parts, llm={"finetune": "lora", "lora_rank": 4}))
    ref.load_state_dict(model.state_dict())  # same projector / adapters / CTC blank
    feats, lens, tokens, tlens = _batch(model)
    model.train(), ref.train()
    out, want = model(feats, lens, tokens, tlens), ref(feats, lens, tokens, tlens)
    assert torch.isfinite(out["loss"])
    assert abs(out["ce_loss"].item() - want["ce_loss"].item()) < 0.05 * want["ce_loss"].item()
    out["loss"].backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in adapters)
    with pytest.raises(ValueError, match=r"model.llm.dtype=bfloat16 holds frozen weights"):
        _cfg(parts, llm={"finetune": "full", "dtype": "bfloat16"})


def test_ctc_alone_skips_the_decoder_unless_ddp_needs_its_grads(parts, monkeypatch):
    torch.manual_seed(0)
    frozen = build_model(_cfg(parts)).train()
    lora = build_model(_cfg(parts, llm={"finetune": "lora", "lora_rank": 4})).train()
    feats, lens, tokens, tlens = _batch(frozen)

    def refuse(*args, **kwargs):
        raise RuntimeError("decoder ran")
    for model in (frozen, lora):
        monkeypatch.setattr(model.decoder, "hidden", refuse)
    out = frozen(feats, lens, tokens, tlens, ce_weight=0.0)  # CTC alone, frozen: not run
    assert out["ce_sum"] == 0 and int(out["ntokens"]) == int((tlens + 1).sum())
    want = frozen.cfg.ctc_weight * out["ctc_sum"] / out["ntokens"]
    torch.testing.assert_close(out["loss"].detach(), want.float())
    out["loss"].backward()
    assert all(p.grad is not None for p in frozen.projector.parameters())
    out = lora(feats, lens, tokens, tlens, ce_weight=0.0)  # a CTC warm-up before LoRA: skipped
    assert out["ce_sum"] == 0
    import unique_asr.models.speech_llm as sl
    monkeypatch.setattr(sl.dist, "is_initialized", lambda: True)  # under DDP: stays in graph
    with pytest.raises(RuntimeError, match="decoder ran"):
        lora(feats, lens, tokens, tlens, ce_weight=0.0)
    with pytest.raises(RuntimeError, match="decoder ran"):  # the CE on: the decoder runs
        frozen(feats, lens, tokens, tlens)


def test_cached_encoder_outputs_give_the_same_loss(parts):
    torch.manual_seed(0)
    live = build_model(_cfg(parts)).eval()
    cached = build_model(_cfg(parts, encoder={"cached": True})).eval()
    assert not any(k.startswith("encoder.") for k in cached.state_dict())  # no Whisper weights
    missing, unexpected = cached.load_state_dict(live.state_dict(), strict=False)
    assert not missing and all(k.startswith("encoder.whisper.") for k in unexpected)
    feats, lens, tokens, tlens = _batch(live)
    with torch.no_grad():
        enc = [live.encoder(feats[i: i + 1, : lens[i]], lens[i: i + 1])[0][0]
               for i in range(len(lens))]  # what stage 2 stores, one recording at a time
        elens = torch.tensor([e.shape[0] for e in enc])
        efeats = torch.zeros(len(enc), int(elens.max()), 32)
        for i, e in enumerate(enc):
            efeats[i, : e.shape[0]] = e
        a = live(feats, lens, tokens, tlens)
        b = cached(efeats, elens, tokens, tlens)
    torch.testing.assert_close(a["loss"], b["loss"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a["ctc_sum"], b["ctc_sum"], rtol=1e-5, atol=1e-4)


def test_greedy_decoding_gives_text(parts):
    from unique_asr.decoding.generate import greedy_search

    model = build_model(_cfg(parts, llm={"prompt": "the"})).eval()
    feats, lens, tokens, tlens = _batch(model)
    with torch.no_grad():
        audio, alens = model.encode(feats, lens)
        hyps, _ = greedy_search(model, audio, alens, 6)
        # prefill + steps agree with the training forward (teacher forcing on the hyps)
        x, _tgt = model._pack(audio, alens, tokens, tlens)
        h = model.decoder.hidden(x, torch.arange(x.shape[1]))
        first = model.decoder.logits(h[0, int(alens[0]) + model.prompt_ids.numel() - 1])
    assert len(hyps) == 2 and all(len(h) <= 6 for h in hyps)
    assert all(isinstance(model.tokenizer.decode(h), str) for h in hyps)
    assert hyps[0] and hyps[0][0] == int(first.argmax())


def test_embedding_ctc_uses_the_llm_embeddings(parts):
    model = build_model(_cfg(parts))
    x = torch.randn(1, 5, 48)
    logp = model.ctc.logprobs(x)
    assert logp.shape == (1, 5, model.decoder.llm.vocab + 1)
    assert model.ctc_blank == model.decoder.llm.vocab
    E = model.decoder.embed.weight
    W = torch.nn.functional.normalize(torch.cat([E, model.ctc.blank_vec[None]]), dim=-1)
    xn = torch.nn.functional.normalize(x, dim=-1)
    ref = (20.0 * xn @ W.T).log_softmax(-1)
    torch.testing.assert_close(logp, ref, rtol=1e-5, atol=1e-5)
    assert not any(p is E for p in model.ctc.parameters())
    # gradients: the blank vector and the input get the reference's, the frozen E none
    E.requires_grad_(True)
    x.requires_grad_(True)
    g = torch.randn_like(logp)
    (model.ctc.logprobs(x) * g).sum().backward()
    blank = model.ctc.blank_vec.detach().clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    W2 = torch.nn.functional.normalize(torch.cat([E.detach(), blank[None]]), dim=-1)
    ref2 = (20.0 * torch.nn.functional.normalize(x2, dim=-1) @ W2.T).log_softmax(-1)
    (ref2 * g).sum().backward()
    torch.testing.assert_close(model.ctc.blank_vec.grad, blank.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-4)
    assert E.grad is None and model.ctc.blank_vec.grad.abs().sum() > 0


def test_config_errors_name_the_key(parts):
    with pytest.raises(ValueError, match=r"model.llm.finetune='lorra'"):
        _cfg(parts, llm={"finetune": "lorra"})
    with pytest.raises(ValueError, match=r"model.encoder.cached=true needs a frozen"):
        _cfg(parts, encoder={"cached": True, "trainable_layers": 1})
    with pytest.raises(ValueError, match=r"model.encoder.dim=64 but"):
        build_model(_cfg(parts, encoder={"dim": 64}))
    with pytest.raises(ValueError, match=r"model.llm.lora_rnk.*valid keys of model.llm"):
        _cfg(parts, llm={"lora_rnk": 4})


def test_hydra_picks_the_classes_and_names_unknown_keys(capsys):
    from unique_asr.bin._common import check_config
    from unique_asr.config import compose, register

    register()
    d = compose(["model=whisper_base_smollm2"]).model
    from omegaconf import OmegaConf
    cfg = ModelConfig.from_dict(OmegaConf.to_container(d, resolve=True))
    assert cfg.encoder.kind == "whisper" and cfg.encoder.cached and cfg.stack == 4
    assert cfg.llm.kind == "pretrained" and cfg.llm.source == "smollm2-135m"
    # model/<group>=<kind> swaps the class (model.llm=<kind> alone sets just the kind name)
    check_config(["model/encoder=whisper", "model/llm=pretrained", "model.llm.finetune=lora"])
    with pytest.raises(SystemExit):
        check_config(["model/llm=pretrained", "model.llm.lora_rnk=4"])
    err = capsys.readouterr().err
    assert "unknown config key 'model.llm.lora_rnk'" in err and "lora_rank" in err


def test_joint_ctc_decoding_with_the_llm_vocabulary(parts):
    """The embedding CTC's classes include the LLM's eos: joint decoding scores it as the end."""
    from unique_asr.decoding.generate import JointCTC, greedy_search

    model = build_model(_cfg(parts)).eval()
    feats, lens, _tokens, _tlens = _batch(model)
    with torch.no_grad():
        audio, alens, logp, clens = model.encode_with_ctc(feats, lens)
        assert logp.shape[-1] == model.decoder.llm.vocab + 1 and model.eos_id < logp.shape[-1]
        joint = JointCTC(logp, clens, model.ctc_blank, 0.5, candidates=4)
        hyps, _ = greedy_search(model, audio, alens, 5, ctc=joint)
    assert len(hyps) == 2 and all(model.eos_id not in h for h in hyps)


def test_checkpoint_leaves_out_the_frozen_pretrained_weights(parts, tmp_path):
    """A checkpoint stores the trained parts only; loading rebuilds the frozen LLM from its
    source, and the reloaded model computes the same loss."""
    from unique_asr.models.checkpoint import load_checkpoint, model_state

    torch.manual_seed(0)
    model = build_model(_cfg(parts, llm={"finetune": "lora", "lora_rank": 4})).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))  # "trained": differs from a fresh build
    state = model_state(model)
    assert not any(k.endswith(("embed.weight", ".base.weight")) for k in state)
    assert any(k.endswith("lora_b") for k in state) and any(k.startswith("projector.")
                                                           for k in state)
    assert sum(v.numel() for v in state.values()) < 0.5 * sum(
        v.numel() for v in model.state_dict().values())
    path = tmp_path / "ck.pt"
    torch.save({"model": state, "model_cfg": model.cfg.to_dict()}, path)
    again, _ = load_checkpoint(path)
    batch = _batch(model)
    with torch.no_grad():
        torch.testing.assert_close(again(*batch)["loss"], model(*batch)["loss"])
    torch.save({"model": {k: v for k, v in state.items() if "lora_b" not in k},
                "model_cfg": model.cfg.to_dict()}, path)
    with pytest.raises(CheckpointMismatchError, match="lora_b"):
        load_checkpoint(path)


def test_init_from_a_frozen_llm_run_adds_identity_lora(parts, tmp_path):
    """train.init_from: a frozen-LLM checkpoint (a CTC-only warm-up) continues with LoRA; the
    adapters start as the identity, so the model computes the frozen one's loss; any other
    config difference is still refused."""
    from unique_asr.models.checkpoint import model_state
    from unique_asr.training.finetune import load_init_weights

    torch.manual_seed(0)
    frozen = build_model(_cfg(parts)).eval()
    with torch.no_grad():
        for p in frozen.projector.parameters():
            p.add_(0.05 * torch.randn_like(p))  # "trained": differs from a fresh build
    path = tmp_path / "frozen.pt"
    torch.save({"model": model_state(frozen), "model_cfg": frozen.cfg.to_dict(), "step": 7}, path)
    lora_cfg = _cfg(parts, llm={"finetune": "lora", "lora_rank": 4})
    lora = build_model(lora_cfg).eval()
    assert load_init_weights(lora, path, lora_cfg) == 7
    batch = _batch(frozen)
    with torch.no_grad():
        torch.testing.assert_close(lora(*batch)["loss"], frozen(*batch)["loss"])
    assert any(isinstance(m, LoRALinear) for m in lora.modules())
    other = _cfg(parts, llm={"finetune": "lora", "lora_rank": 4}, stack=2)
    with pytest.raises(CheckpointMismatchError, match="stack"):
        load_init_weights(build_model(other), path, other)
