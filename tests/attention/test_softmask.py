"""Soft-mask UNIQUE attention: fused Triton kernel (fwd + bwd) against the float64 reference.

Small sizes run everywhere (CPU: TRITON_INTERPRET=1 runs the kernels); the `full` sizes are
marked gpu and need CUDA. Inputs are fresh random tensors in every test.
"""

from __future__ import annotations

import os

import pytest
import torch

from unique_asr.attention.reference import page_stats
from unique_asr.attention.reference_softmask import (
    full_page_stats,
    page_thresholds,
    query_page_scores,
    softmask_attention_reference,
)
from unique_asr.attention.softmask import softmask_attention

CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"
RUN_TRITON = CUDA or os.environ.get("TRITON_INTERPRET", "0") == "1"
needs_triton = pytest.mark.skipif(not RUN_TRITON, reason="needs CUDA or TRITON_INTERPRET=1")
gpu_full = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="full size needs CUDA")]


def _inputs(B, H, Hkv, L, D, dtype, gen):
    q = torch.randn(B, H, L, D, device=DEV, generator=gen)
    # a per-dimension key offset makes page means differ, like real post-RoPE keys
    k = torch.randn(B, Hkv, L, D, device=DEV, generator=gen)
    k = k + 0.5 * torch.randn(1, Hkv, 1, D, device=DEV, generator=gen)
    v = torch.randn(B, Hkv, L, D, device=DEV, generator=gen)
    return [x.to(dtype) for x in (q, k, v)]


def _gen():
    return torch.Generator(device=DEV).manual_seed(torch.seed() % 2**31)


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def _compare(B, H, Hkv, L, D, S, budget, tau, mode, dtype, seqlens=None):
    """Relative errors of out, dq, dk, dv: Triton (dtype) vs float64 reference."""
    gen = _gen()
    q, k, v = _inputs(B, H, Hkv, L, D, dtype, gen)
    sl = None if seqlens is None else torch.tensor(seqlens, device=DEV)
    xs = [x.clone().requires_grad_() for x in (q, k, v)]
    out = softmask_attention(*xs, page_size=S, budget=budget, tau=tau, mode=mode, seqlens=sl,
                             backend="triton")
    dout = torch.randn(out.shape, device=DEV, generator=gen).to(dtype)
    grads = torch.autograd.grad(out, xs, dout)
    rs = [x.detach().double().requires_grad_() for x in (q, k, v)]
    ref = softmask_attention_reference(*rs, page_size=S, budget=budget, tau=tau, mode=mode,
                                       seqlens=sl)
    rgrads = torch.autograd.grad(ref, rs, dout.double())
    for t in (out, *grads):
        assert torch.isfinite(t).all()
    return [_rel(out, ref)] + [_rel(g, r) for g, r in zip(grads, rgrads)]


# ------------------------------------------------------------------ reference self-checks
def test_reference_stats_match_shared_page_stats():
    k = torch.randn(2, 3, 29, 16, dtype=torch.float64)
    mean, std = full_page_stats(k, 4)
    m_ref, s_ref = page_stats(k, 4)
    torch.testing.assert_close(mean.float(), m_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(std.float(), s_ref, rtol=1e-5, atol=1e-5)


def test_reference_threshold_keeps_budget():
    """Hard mode keeps the own page plus exactly k - 1 past pages for every masked query."""
    S, budget, L = 4, 16, 61
    q = torch.randn(1, 4, L, 16, dtype=torch.float64)
    k = torch.randn(1, 2, L, 16, dtype=torch.float64)
    mean, std = full_page_stats(k, S)
    scores = query_page_scores(q, mean, std)
    theta = page_thresholds(scores, S, budget // S)
    own = torch.arange(L) // S
    past = torch.arange(scores.shape[-1])[None, :] < own[:, None]
    kept = ((scores > theta[..., None]) & past).sum(-1)
    masked = own >= budget // S
    assert (kept[..., masked] == budget // S - 1).all()
    assert torch.isinf(theta[..., ~masked]).all()


# ----------------------------------------------------------------------- kernel vs reference
SMALL = [
    # B, H, Hkv, L, D, S, budget, seqlens
    pytest.param((1, 2, 2, 77, 64, 4, 16, None), id="g1-d64-odd"),
    pytest.param((2, 4, 1, 53, 128, 4, 8, [53, 30]), id="g4-d128-varlen"),
    pytest.param((1, 8, 2, 70, 64, 8, 24, None), id="g4-d64-s8-partial"),
]
FULL = [
    pytest.param((2, 32, 8, 2048, 128, 8, 512, [2048, 1500]), id="full-g4-d128",
                 marks=gpu_full),
    pytest.param((1, 8, 8, 1536, 64, 8, 256, None), id="full-g1-d64", marks=gpu_full),
]


@needs_triton
@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize("case", SMALL + FULL)
def test_fp32_matches_float64_reference(case, mode):
    B, H, Hkv, L, D, S, budget, sl = case
    if mode == "hard" and L > 1000:
        pytest.skip("hard top-k at full size: ~1e5 rows make a near-tie flip (fp32 vs fp64 "
                    "scores) likely, which moves a whole row; covered at small size")
    errs = _compare(B, H, Hkv, L, D, S, budget, 0.5, mode, torch.float32, sl)
    # Issue 5 asks 1e-5 for fp32 against float64. At full size on the H200 this does not hold
    # yet (last run: dq 5.1e-4, dk 4.0e-4; earlier kernel ~3e-5, suspected GQA-argmax near-ties
    # sending a score gradient to another head than float64 does). Kept strict on purpose.
    assert max(errs) < 1e-5, f"out/dq/dk/dv rel errors {errs}"


@needs_triton
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", SMALL[1:2] + FULL[:1])
def test_half_matches_float64_reference(case, dtype):
    B, H, Hkv, L, D, S, budget, sl = case
    errs = _compare(B, H, Hkv, L, D, S, budget, 0.5, "soft", dtype, sl)
    assert max(errs) < 1e-2, f"out/dq/dk/dv rel errors {errs}"


@needs_triton
@pytest.mark.parametrize("size", [pytest.param((1, 4, 2, 45, 64), id="small"),
                                  pytest.param((1, 32, 8, 1024, 128), id="full",
                                               marks=gpu_full)])
def test_budget_above_context_is_dense_causal(size):
    """With budget >= context no query is masked: equals dense causal attention (SDPA)."""
    B, H, Hkv, L, D = size
    q, k, v = _inputs(B, H, Hkv, L, D, torch.float32, _gen())
    xs = [x.clone().requires_grad_() for x in (q, k, v)]
    out = softmask_attention(*xs, page_size=8, budget=8 * (L // 8 + 1), tau=0.5,
                             backend="triton")
    ys = [x.clone().requires_grad_() for x in (q, k, v)]
    G = H // Hkv
    dense = torch.nn.functional.scaled_dot_product_attention(
        ys[0], ys[1].repeat_interleave(G, 1), ys[2].repeat_interleave(G, 1), is_causal=True)
    dout = torch.randn_like(out)
    g1 = torch.autograd.grad(out, xs, dout)
    g2 = torch.autograd.grad(dense, ys, dout)
    assert _rel(out, dense) < 1e-5
    for a, b in zip(g1, g2):
        assert _rel(a, b) < 1e-5


@needs_triton
def test_small_tau_approaches_hard_mask():
    """The soft gate tends to the hard top-k mask as tau -> 0 (error shrinks with tau)."""
    B, H, Hkv, L, D, S, budget = 1, 4, 2, 90, 64, 4, 16
    q, k, v = _inputs(B, H, Hkv, L, D, torch.float32, _gen())
    kw = {"page_size": S, "budget": budget, "backend": "triton"}
    hard = softmask_attention(q, k, v, tau=1.0, mode="hard", **kw)
    errs = [_rel(softmask_attention(q, k, v, tau=tau, mode="soft", **kw), hard)
            for tau in (1.0, 0.05, 1e-4)]
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[0] > 1e-2  # the soft gate really differs at tau = 1
    assert errs[2] < 1e-3, errs


def test_cpu_default_backend_is_reference_and_checks_args():
    q = torch.randn(1, 2, 20, 16)
    k = torch.randn(1, 1, 20, 16)
    out = softmask_attention(q, k, k, page_size=4, budget=8, backend="reference")
    ref = softmask_attention_reference(q, k, k, page_size=4, budget=8, tau=0.5)
    torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match="budget"):
        softmask_attention(q, k, k, page_size=4, budget=4)
    with pytest.raises(ValueError, match="mode"):
        softmask_attention(q, k, k, page_size=4, budget=8, mode="x")
    with pytest.raises(ValueError, match="KV heads"):
        softmask_attention(q, torch.randn(1, 3, 20, 16), torch.randn(1, 3, 20, 16))


@needs_triton
def test_triton_thresholds_match_reference(monkeypatch):
    """Per-query theta from the chunked score scratch + radix select equals the sorted reference
    (the scratch is forced into several query chunks)."""
    from unique_asr.attention.triton import softmask as tsm

    monkeypatch.setattr(tsm, "_SCRATCH_ELEMS", 4096)
    B, H, Hkv, L, D, S, budget = 2, 4, 2, 301, 64, 4, 32
    q, k, _ = _inputs(B, H, Hkv, L, D, torch.float32, _gen())
    mh, ml, _, std = tsm.page_stats_triton(k, S)
    theta = tsm.thresholds_triton(q, mh, ml, std, Hkv=Hkv, page_size=S, k_pages=budget // S,
                                  lam=0.5).view(B, Hkv, L)
    mean, sd = full_page_stats(k.double(), S)
    ref = page_thresholds(query_page_scores(q.double(), mean, sd), S, budget // S)
    fin = torch.isfinite(ref)
    assert torch.equal(fin, torch.isfinite(theta))
    torch.testing.assert_close(theta[fin].double(), ref[fin], rtol=1e-5, atol=1e-5)


@needs_triton
@pytest.mark.parametrize("case", [pytest.param((1, 6, 2, 41, 64, 4, 8), id="g3"),
                                  pytest.param((1, 8, 1, 41, 64, 4, 8), id="g8")])
def test_other_gqa_ratios(case):
    """GQA ratios that are not a power of two (padded head rows) and the largest, 8."""
    B, H, Hkv, L, D, S, budget = case
    errs = _compare(B, H, Hkv, L, D, S, budget, 0.5, "soft", torch.float32)
    assert max(errs) < 1e-5, f"out/dq/dk/dv rel errors {errs}"
