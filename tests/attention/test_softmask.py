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


TIE_GAP = 3e-6  # relative gap between the two best GQA heads' page scores treated as a tie


def _gqa_tie_keep(q, k, S, budget, seqlens):
    """Rows of dq [B,H,L] and dk [B,Hkv,L] that a GQA-max near-tie cannot touch (True = keep).

    The page score is a max over the G query heads and its gradient goes to the argmax head.
    Where two heads' float64 scores are closer than fp32 rounding (~1e-6 relative), the float32
    kernel may pick the other head: the function has a kink there, and one such flip moves a
    whole (query, page) score gradient between heads (measured: one flip in a 2048-token,
    32/8-head case gives dq 1.7e-4 and dk 1.1e-4 relative error with out and dv exact). Such
    points are rare (~0.3 per full-size draw), so the comparison leaves out the dq rows of that
    query's group and the dk rows of that page, for near-ties of masked, in-sequence queries
    with gap < TIE_GAP * (1 + |score|): fp32 score errors reach ~8e-7 on that scale (max over a
    full-size draw, CPU float32 einsum) and the flips seen had gaps <= 1e-7. At full size this
    leaves out ~0.3% of dq rows and ~2-3% of dk rows.
    """
    B, H, L, D = q.shape
    Hkv = k.shape[1]
    G = H // Hkv
    keep_q = torch.ones(B, H, L, dtype=torch.bool, device=q.device)
    keep_k = torch.ones(B, Hkv, L, dtype=torch.bool, device=q.device)
    if G == 1:
        return keep_q, keep_k
    mean, std = full_page_stats(k.double(), S)
    qg = q.double().view(B, Hkv, G, L, D)
    sc = torch.einsum("bhgld,bhpd->bhglp", qg, mean)
    sc = sc + 0.5 * qg.norm(dim=-1)[..., None] * std[:, :, None, None, :]
    top2 = sc.topk(2, dim=2).values  # [B, Hkv, 2, L, P]
    tie = (top2[:, :, 0] - top2[:, :, 1]) < TIE_GAP * (1 + top2[:, :, 0].abs())
    t = torch.arange(L, device=q.device)
    P = sc.shape[-1]
    own = t // S
    past = (torch.arange(P, device=q.device)[None, :] < own[:, None]) & (own >= budget // S)[:, None]
    valid = torch.ones(B, L, dtype=torch.bool, device=q.device)
    if seqlens is not None:
        valid = t[None, :] < seqlens.to(q.device)[:, None]
    tie = tie & past & valid[:, None, :, None]  # [B, Hkv, L, P]
    keep_q = ~tie.any(-1).repeat_interleave(G, dim=1)
    page_hit = tie.any(2)  # [B, Hkv, P]
    keep_k = ~page_hit.repeat_interleave(S, dim=-1)[..., :L]
    return keep_q, keep_k


def _compare(B, H, Hkv, L, D, S, budget, tau, mode, dtype, seqlens=None, plain_ref=False):
    """Relative errors of out, dq, dk, dv: Triton (dtype) vs float64 reference (dq and dk leave
    out the rows a GQA-max near-tie touches, see _gqa_tie_keep; at most 1% / 5% of them).

    plain_ref: also return (and print) the errors of the reference itself evaluated in `dtype`
    on the same inputs (the floor a kernel in that precision can be held against): the result
    is then (kernel errors, plain reference errors)."""
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
    keep_q, keep_k = _gqa_tie_keep(q, k, S, budget, sl)
    print(f"near-tie rows left out: dq {int((~keep_q).sum())}/{keep_q.numel()}, "
          f"dk {int((~keep_k).sum())}/{keep_k.numel()}")
    # at most 1% of dq rows / 5% of dk rows (full size), and never less than one near-tie's
    # rows (G query heads, one page of S keys): at small sizes one tie alone is > 5% of dk rows
    # (L=70, 2 KV heads: 8 of 140), which made this check fail on ~1 draw in 10 (CI, session 3)
    n_q, n_k = int((~keep_q).sum()), int((~keep_k).sum())
    assert n_q <= max(0.01 * keep_q.numel(), H // Hkv) and n_k <= max(0.05 * keep_k.numel(), S), \
        f"too many near-ties: {n_q} dq rows, {n_k} dk rows left out"
    keeps = [None, keep_q, keep_k, None]
    if plain_ref:
        ps = [x.detach().clone().requires_grad_() for x in (q, k, v)]
        pref = softmask_attention_reference(*ps, page_size=S, budget=budget, tau=tau, mode=mode,
                                            seqlens=sl)
        pgrads = torch.autograd.grad(pref, ps, dout)
        perr = [_rel(a, r) if m is None else _rel(a[m], r[m])
                for a, r, m in zip((pref, *pgrads), (ref, *rgrads), keeps)]
        print(f"plain {dtype} reference out/dq/dk/dv rel err", [f"{e:.2e}" for e in perr])
    errs = [_rel(a, r) if m is None else _rel(a[m], r[m])
            for a, r, m in zip((out, *grads), (ref, *rgrads), keeps)]
    return (errs, perr) if plain_ref else errs


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
    errs = _compare(B, H, Hkv, L, D, S, budget, 0.5, mode, torch.float32, sl,
                    plain_ref=mode == "soft")
    if mode == "soft":
        errs, perr = errs
        print("fp32 kernel / plain fp32 reference error ratio",
              [f"{a / max(b, 1e-12):.2f}" for a, b in zip(errs, perr)])
    print("fp32", mode, case, "out/dq/dk/dv rel err", [f"{e:.2e}" for e in errs])
    # Issue 5 asks 1e-5 for fp32 against float64. Before _compare left out GQA-max near-ties the
    # full-size GPU case failed with dq 5.1e-4, dk 4.0e-4 (a kink of the function, not
    # precision). Without them (H200, 14:15 UTC): out 3.6e-6, dq 1.7e-5, dk 1.4e-5, dv 4.0e-6,
    # 3.5-4x a plain fp32 PyTorch run of the reference (out 1.0e-6, dq 4.2e-6, dk 3.5e-6, dv
    # 1.1e-6 on such inputs; the gate magnifies score rounding ~120x). IEEE sqrt/div and a
    # float64 ||q|| (commit 5e596a0) left this unchanged on the H200 (19:20 UTC: 3.6e-6, 1.7e-5,
    # 1.4e-5, 4.0e-6). Cause: Triton folded the score offset (~60) into the page-score dot's
    # accumulator (test_fp32_gpu_dots_start_from_zero; module docstring, "float32 accuracy").
    assert max(errs) < 1e-5, f"out/dq/dk/dv rel errors {errs}"


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET", "0") != "1", reason="interpreter only")
def test_fp32_path_does_not_use_the_fast_sqrt(monkeypatch):
    """On the GPU tl.sqrt is sqrt.approx (<= 3 ulp), and the rounding of its input differs
    between kernels; the gate magnifies ||q|| / std errors ~120x, which made the H200's fp32
    errors 3.5-4x those of a plain float32 reference. Emulate such a square root (a fresh
    +-4 ulp error per call) in the interpreter: the float32 path must be unaffected (it uses
    IEEE sqrt and one float64 ||q|| shared by all kernels)."""
    import numpy as np
    from triton.runtime import interpreter

    rng = np.random.default_rng(0)
    fp32_calls = []

    def sloppy_sqrt(x):
        y = np.sqrt(x)
        if y.dtype != np.float32:
            return y
        fp32_calls.append(y.size)
        return (y + rng.uniform(-4, 4, y.shape) * np.spacing(y)).astype(np.float32)

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_sqrt",
                        lambda self, arg: self.unary_op(arg, sloppy_sqrt))
    B, H, Hkv, L, D, S, budget, sl = SMALL[2].values[0]
    errs, perr = _compare(B, H, Hkv, L, D, S, budget, 0.5, "soft", torch.float32, sl,
                          plain_ref=True)
    print("fp32 with a sloppy tl.sqrt: out/dq/dk/dv rel err", [f"{e:.2e}" for e in errs])
    assert not fp32_calls, f"tl.sqrt (sqrt.approx on the GPU) used on {sum(fp32_calls)} values"
    # about as accurate as the plain float32 reference on the same inputs (the old kernels gave
    # 4-7x here); the margin covers the draw-to-draw spread of the ratio at this small size
    for name, e, p in zip(("out", "dq", "dk", "dv"), errs, perr):
        assert e < 2 * p + 1e-7, f"{name}: kernel {e:.2e} vs plain float32 reference {p:.2e}"


@needs_triton
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", SMALL[1:2] + FULL[:1])
def test_half_matches_float64_reference(case, dtype):
    B, H, Hkv, L, D, S, budget, sl = case
    errs = _compare(B, H, Hkv, L, D, S, budget, 0.5, "soft", dtype, sl)
    print(dtype, case, "out/dq/dk/dv rel err", [f"{e:.2e}" for e in errs])
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
    """The soft gate tends to the hard top-k mask as tau -> 0 (error shrinks with tau).

    The smallest tau is 1e-6: the two pages around theta sit g/2 from it (g their score gap)
    and keep a partial gate unless g >> tau; with ~150 masked rows and scores spread over ~6,
    some row had g < ~1e-3 in ~1 draw of 4 at tau 1e-4 (errors 3e-3..1e-2, CPU, 19:45 UTC);
    at 1e-6 that needs g < ~1e-5 (~0.3% of draws)."""
    B, H, Hkv, L, D, S, budget = 1, 4, 2, 90, 64, 4, 16
    q, k, v = _inputs(B, H, Hkv, L, D, torch.float32, _gen())
    kw = {"page_size": S, "budget": budget, "backend": "triton"}
    hard = softmask_attention(q, k, v, tau=1.0, mode="hard", **kw)
    errs = [_rel(softmask_attention(q, k, v, tau=tau, mode="soft", **kw), hard)
            for tau in (1.0, 0.05, 1e-6)]
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


@needs_triton
def test_lo_grad_off_still_matches(monkeypatch):
    """The speed option lo_grad=False (no low halves of dS / page mean in the bf16/fp16 gradient
    dots) keeps the semantics: fp16 small case within 1e-2 of the float64 reference."""
    from unique_asr.attention.triton import softmask as tsm

    monkeypatch.setitem(tsm.CONFIG_OVERRIDES, "lo_grad", False)
    B, H, Hkv, L, D, S, budget, sl = SMALL[1].values[0]
    errs = _compare(B, H, Hkv, L, D, S, budget, 0.5, "soft", torch.float16, sl)
    assert max(errs) < 1e-2, f"out/dq/dk/dv rel errors {errs}"


_TTIR_PROBE = r'''
import json, os, re, sys
os.environ.pop("TRITON_INTERPRET", None)
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from unique_asr.attention.triton import softmask as sm

D, S, G = 64, 8, 4
cfg = sm._Cfg(D, S, G, torch.float32)
ptrs = {"Q", "QN", "K", "V", "MH", "ML", "STD", "THETA", "SCR", "O", "LSE"}
floats = {"lam", "sm_scale2", "inv_tau"}

def ttir(fn, cons, warps):
    sig = {n: "constexpr" if n in cons else "*i32" if n == "SEQ" else "*fp32" if n in ptrs
           else "fp32" if n in floats else "i32" for n in fn.arg_names}
    src = ASTSource(fn, sig, constexprs={(fn.arg_names.index(k),): v for k, v in cons.items()})
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                       options={"num_warps": warps, "num_stages": 1})
    return k.asm["ttir"]

def dots(ir):
    """(K, accumulator is a constant zero) of every tt.dot."""
    zeros = set(re.findall(r"(%[\w.]+) = arith.constant dense<0.0+e\+00> : tensor", ir))
    out = []
    for m in re.finditer(r"tt.dot %[\w.]+, %[\w.]+, (%[\w.]+).*: tensor<\d+x(\d+)xf32>", ir):
        out.append((int(m.group(2)), m.group(1) in zeros))
    return out

common = dict(D=D, GP=cfg.GP, G=G, S=S, USE_LO=cfg.use_lo, PREC=cfg.prec, EXACT=cfg.exact)
res = {"exact": cfg.exact, "NP": cfg.BN // S,
       "scores": dots(ttir(sm._scores_kernel, dict(common, BT=16, NPC=64), 4)),
       "fwd": dots(ttir(sm._fwd_kernel, dict(common, BT=cfg.BT_fwd, BN=cfg.BN, HARD=False,
                                             HAS_SEQ=False, REV=False), cfg.fwd_warps))}
print(json.dumps(res))
'''


def test_fp32_gpu_dots_start_from_zero():
    """Compiled for sm_90 (no GPU needed; a subprocess without TRITON_INTERPRET): in the float32
    kernels the page-score dot and the p @ v dot start from a zero accumulator. Triton's combine
    pass rewrites `c + tl.dot(a, b)` into `tl.dot(a, b, c)`; for the page score c = lam ||q||
    std ~ 60, so every FMA of the ieee dot chain rounded at ulp(60): that made the H200's fp32
    errors ~4x those of a plain float32 reference (dq 1.7e-5), reproduced on CPU by emulating
    the chain (module docstring of the kernels, "float32 accuracy"). The only dot allowed an
    accumulator is the page -> token expansion of the log gate (K = 2 pages per key block)."""
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", _TTIR_PROBE], env=env, cwd=root, check=False,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["exact"]
    assert res["scores"] and all(zero for _k, zero in res["scores"]), res["scores"]
    fused = [kk for kk, zero in res["fwd"] if not zero]
    assert len(res["fwd"]) >= 3 and all(kk == 2 * res["NP"] for kk in fused), res["fwd"]


@needs_triton
@pytest.mark.parametrize("seqlens", [None, (37, 21)])
def test_length_padding_is_exact(seqlens):
    """CUDA pads L to a multiple of 128 (fewer kernel recompiles, triton/softmask.py
    CUDA_LENGTH_MULTIPLE): outputs and gradients of the real positions must not change."""
    from unique_asr.attention.triton.softmask import softmask_attention_triton

    gen = _gen()
    q, k, v = _inputs(2, 4, 2, 37, 16, torch.float32, gen)
    sl = None if seqlens is None else torch.tensor(seqlens, device=DEV)
    dout = torch.randn(q.shape, device=DEV, generator=gen)
    res = []
    for mult in (1, 16):
        xs = [x.clone().requires_grad_() for x in (q, k, v)]
        out = softmask_attention_triton(*xs, page_size=4, budget=12, tau=0.5, hard=False,
                                        lam=0.5, seqlens=sl, length_multiple=mult)
        assert out.shape == q.shape
        res.append([out.detach(), *torch.autograd.grad(out, xs, dout)])
    for a, b in zip(*res):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (a - b).abs().max()
