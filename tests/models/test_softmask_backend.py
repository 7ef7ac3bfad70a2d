"""The decoder's sparsity-aware training backends (unique_soft / unique_hard) through the model."""

from __future__ import annotations

import torch

from tests.models.test_model import small_cfg
from unique_asr.models import SpeechLLM
from unique_asr.models.attention import TrainAttentionConfig


def _batch():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(2, 400, 80, generator=g)
    feat_lens = torch.tensor([400, 330])
    tokens = torch.randint(0, 30, (2, 9), generator=g)
    token_lens = torch.tensor([9, 6])
    return feats, feat_lens, tokens, token_lens


def _loss(kind: str, budget: int):
    torch.manual_seed(0)
    ta = TrainAttentionConfig(kind=kind, budget=budget, page_size=8, tau=0.5)
    model = SpeechLLM(small_cfg(), ta).train()
    out = model(*_batch())
    out["loss"].backward()
    grads = [p.grad for p in model.decoder.parameters() if p.grad is not None]
    return out["loss"].detach(), grads


def test_soft_and_hard_with_budget_above_context_equal_dense():
    dense, dense_grads = _loss("dense", 512)
    for name in ("unique_soft", "unique_hard"):
        loss, grads = _loss(name, 4096)
        torch.testing.assert_close(loss, dense, rtol=1e-5, atol=1e-5)
        for a, b in zip(grads, dense_grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_small_budget_masks_and_trains():
    dense, _ = _loss("dense", 512)
    for name in ("unique_soft", "unique_hard"):
        loss, grads = _loss(name, 16)  # 2 pages of 8 tokens: long prompts are masked
        assert torch.isfinite(loss)
        assert not torch.allclose(loss, dense)
        assert grads and all(torch.isfinite(g).all() for g in grads)
