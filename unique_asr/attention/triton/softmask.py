"""Fused Triton kernels for UNIQUE soft-mask (sparsity-aware training) attention.

Semantics are those of ``unique_asr/attention/reference_softmask.py`` (read its docstring); this
module never materialises an L x L tensor. Pieces:

- ``_stats_kernel``: per page mean (split into a hi + lo pair of the input dtype, so the tensor
  core dot q.mean is nearly float32 exact) and std (float32), from the keys.
- ``_scores_kernel`` + ``_select_kernel``: the per-query threshold. Scores of the past pages for a
  chunk of query positions go to a float32 scratch [B*Hkv, Lc, Pc] (per (query block, page), the
  chunk bounded to ~128 MiB); a radix (bitwise) select over the row held in registers finds the
  (k-1)-th and k-th largest past-page scores exactly, theta = their midpoint.
- ``_fwd_kernel``: FlashAttention-style forward. One program owns a block of BT query positions
  for ALL G query heads of one KV head (rows = BT * GP, GP = G rounded up to a power of two), so
  the GQA max of the page score is a reduction inside the program and K/V are read once per
  group. For each key block the page scores of its NP = BN / S pages are a small [rows x NP] dot
  of q with the page means (hi + lo halves), plus the rank-one ||q|| * std offset; the log gate
  is expanded to the page's tokens by a tensor-core dot with a 0/1 page indicator (K = 2 NP,
  hi/lo interleaved) accumulated onto the q.k logits. "-inf" (hard mode) is a finite -1e30
  (-3e4 in fp16) so that 0 * bias stays NaN-free.
- ``_bwd_dq_kernel`` (per query block) and ``_bwd_dkdv_kernel`` (per key block): recompute logits
  and gates; the logit gradient also flows to the gate: d score = sum over the page's tokens and
  the group's heads of dS, times sigmoid(-z) / tau, routed to the argmax head (ties share it);
  into q via the page mean (dq), and into the keys: d mean_p / S is folded into the dS^T q dot
  of dk (dS expanded to the page's tokens), d std_p becomes (k_j - mean_p) / (S std_p) per key
  at the end of the key-block program (a page lies inside one key block: BN % S == 0).
- Block sizes: ``_Cfg`` (overridable through ``CONFIG_OVERRIDES`` for tuning). Pointers use a
  64-bit scalar base plus 32-bit tile offsets (64-bit offset tiles cost registers and spills).
- float32 accuracy (``EXACT``, float32 inputs only; compiled out for bf16/fp16): the gate turns
  an absolute score error e into a logit error ~ e / tau, and scores are ~60 (the lam ||q|| std
  term), so score rounding is magnified ~120x. Triton's combine pass rewrites
  ``c + tl.dot(a, b)`` into ``tl.dot(a, b, c)``, so a float32 "ieee" page-score dot (an FMA chain
  over D on the GPU) would start from c = lam ||q|| std and round each of its D steps at
  ulp(60). EXACT hides the dot from that rewrite (``_unfused``, an identity inline-asm mov, free
  after ptxas) for the page scores and for the o / dk / dv block products (added to the running
  sums, not chained through them), and also uses ||q|| computed once in float64 (query_norms,
  the same value in every kernel) and IEEE sqrt / division (tl.sqrt_rn, tl.div_rn) for the page
  stats, the output normalisation and the std gradient. The interpreter does not fold (numpy
  dot, then the add), so CPU tests cannot see this; test_fp32_gpu_dots_start_from_zero compiles
  the float32 kernels for sm_90 and checks the accumulators.

Speed against dense SDPA and the block-size choices: bench/NOTES.md ("Soft-mask kernel").
"""

from __future__ import annotations

import contextlib
import json
import os

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634
_SCRATCH_ELEMS = 1 << 25  # float32 scores scratch per threshold chunk (128 MiB)
# CUDA: the sequence axis is zero-padded to a multiple of this before the kernels run. Triton
# compiles a new variant of a kernel whenever an integer argument (L, P = pages, chunk bounds)
# changes its divisibility by 16, and training windows have a new length every step, so without
# padding a short fine-tune spends much of its time compiling. With L a multiple of 128 (P a
# multiple of 16) every step takes the same variants. Padding at the end is
# exact for causal attention: a real query never sees the padded keys, and the page holding them
# is never a past page of a real query.
CUDA_LENGTH_MULTIPLE = 128


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# ----------------------------------------------------------------------------------- helpers
# Triton 3.6's interpreter multiplies bfloat16 dot operands as raw uint16: upcast there.
_INTERP = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") == "1")


@triton.jit
def _mm(a, b, acc=None, input_precision: tl.constexpr = None):
    if _INTERP:
        out = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        out = tl.dot(a, b, acc, input_precision=input_precision)
    return out


@triton.jit
def _qnorm(q, QN, roff, row_ok, EXACT: tl.constexpr):
    """||q|| per row [BM]. EXACT (float32): loaded from QN (the norm computed once, in float64,
    by the driver), so every kernel sees the same correctly rounded value; otherwise a float32
    sum and the fast (sqrt.approx, <= 3 ulp on the GPU) square root."""
    if EXACT:
        qn = tl.load(QN + roff, mask=row_ok, other=0.0)
    else:
        qf = q.to(tl.float32)
        qn = tl.sqrt(tl.sum(qf * qf, axis=1))
    return qn


@triton.jit
def _unfused(x):
    """x unchanged, but opaque to Triton's combine pass, which rewrites ``c + tl.dot(a, b)``
    (zero accumulator, one use) into ``tl.dot(a, b, c)``: in float32 ("ieee", an FMA chain on
    the GPU) every one of the K steps then rounds at the magnitude of c. For the page score,
    c = lam ||q|| std ~ 60: D roundings at ulp(60) = 3.8e-6 (RMS ~1.2e-5 at D 128) instead of at
    ulp(~4) (see the module docstring, "float32 accuracy"). The identity mov is
    free (ptxas drops it); the interpreter does not fold, so it needs nothing."""
    if _INTERP:
        out = x
    else:
        out = tl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [x], dtype=tl.float32,
                                        is_pure=True, pack=1)
    return out


@triton.jit
def _acc_mm(a, b, acc, PREC: tl.constexpr, EXACT: tl.constexpr):
    """acc + a @ b. EXACT (float32): the block product starts from zero and is added after, so
    the GPU's float32 FMA dot chains over one block (K = 64..128), not over the whole sequence
    (an FMA chain over 2048 keys loses ~30 ulp to rounding of the growing partial sums); the
    block product goes through _unfused, else Triton folds the add back into the dot."""
    if EXACT:
        out = acc + _unfused(_mm(a, b, input_precision=PREC))
    else:
        out = _mm(a, b, acc, input_precision=PREC)
    return out


@triton.jit
def _logsigmoid(z):
    # stable log(sigmoid(z)) = min(z, 0) - log(1 + exp(-|z|)); z = +inf gives 0
    return tl.minimum(z, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(z)))


@triton.jit
def _row_page_scores(q, qnorm, mh, ml, st, lam, USE_LO: tl.constexpr, PREC: tl.constexpr,
                     EXACT: tl.constexpr):
    """[rows, NP] = q . mean_p + lam * ||q|| * std_p (float32). EXACT: the dot is summed from
    zero and the offset (~60) added once (_unfused), not used as the dot's accumulator."""
    s = _mm(q, tl.trans(mh), input_precision=PREC)
    if USE_LO:
        s = _mm(q, tl.trans(ml), s, input_precision=PREC)
    if EXACT:
        s = _unfused(s)
    return s + lam * qnorm[:, None] * st[None, :]


@triton.jit
def _group_max(sr, BT: tl.constexpr, GP: tl.constexpr, G: tl.constexpr, NP: tl.constexpr):
    """GQA max: rows ordered (position, head) -> [BT, NP]; padded heads (g >= G) ignored."""
    s3 = tl.reshape(sr, (BT, GP, NP))
    if GP != G:
        gg = tl.arange(0, GP)
        s3 = tl.where((gg < G)[None, :, None], s3, float("-inf"))
    return tl.max(s3, axis=1)


@triton.jit
def _to_rows(x, BT: tl.constexpr, GP: tl.constexpr, NP: tl.constexpr):
    """[BT, NP] per position -> [BT*GP, NP] per row."""
    return tl.reshape(tl.broadcast_to(x[:, None, :], (BT, GP, NP)), (BT * GP, NP))


@triton.jit
def _pages_to_tokens(x, acc, dt: tl.constexpr, BN: tl.constexpr, S: tl.constexpr,
                     PREC: tl.constexpr):
    """acc + x expanded from pages to key tokens: [BM, NP] -> [BM, BN], x[:, n // S].

    Done on the tensor cores: (x_hi, x_lo) interleaved [BM, 2NP] @ 0/1 page indicator [2NP, BN]
    (hi + lo keep ~16 mantissa bits; K = 2NP >= 16), avoiding a register-hungry 3-D reshape.
    """
    NP: tl.constexpr = BN // S
    BM: tl.constexpr = x.shape[0]
    hi = x.to(dt)
    lo = (x - hi.to(tl.float32)).to(dt)
    a = tl.reshape(tl.join(hi, lo), (BM, 2 * NP))
    # (via float32: the 3.6 interpreter casts bool -> bfloat16 as raw bits)
    et = ((tl.arange(0, BN)[None, :] // S) == (tl.arange(0, 2 * NP) // 2)[:, None]).to(
        tl.float32).to(dt)
    return _mm(a, et, acc, input_precision=PREC)


@triton.jit
def _pages_dot(x, m, acc, dt: tl.constexpr, PREC: tl.constexpr):
    """acc + x @ m for x [BM, NP] float32, m [NP, D] (dt), with K = 2NP >= 16 (x as hi + lo)."""
    NP: tl.constexpr = m.shape[0]
    D: tl.constexpr = m.shape[1]
    BM: tl.constexpr = x.shape[0]
    hi = x.to(dt)
    lo = (x - hi.to(tl.float32)).to(dt)
    a = tl.reshape(tl.join(hi, lo), (BM, 2 * NP))
    m2 = tl.reshape(tl.broadcast_to(m[:, None, :], (NP, 2, D)), (2 * NP, D))
    return _mm(a, m2, acc, input_precision=PREC)


@triton.jit
def _tile(q, qnorm, k, t, theta_t, own_t, n0, n_b, MH, ML, STD, page_base, P, sm_scale2, lam,
          inv_tau, D: tl.constexpr, BT: tl.constexpr, GP: tl.constexpr, G: tl.constexpr,
          BN: tl.constexpr, S: tl.constexpr, HARD: tl.constexpr, MASK: tl.constexpr,
          USE_LO: tl.constexpr, PREC: tl.constexpr, EXACT: tl.constexpr):
    """Base-2 logits [BM, BN] of one tile incl. page bias and masks, plus page-level terms."""
    NP: tl.constexpr = BN // S
    offs_d = tl.arange(0, D)
    pg = n0 // S + tl.arange(0, NP)
    pmask = pg < P
    mh = tl.load((MH + page_base * D) + (pg[:, None] * D + offs_d[None, :]), mask=pmask[:, None],
                 other=0.0)
    ml = tl.load((ML + page_base * D) + (pg[:, None] * D + offs_d[None, :]), mask=pmask[:, None],
                 other=0.0)
    st = tl.load((STD + page_base) + pg, mask=pmask, other=0.0)
    sr = _row_page_scores(q, qnorm, mh, ml, st, lam, USE_LO, PREC, EXACT)  # [BM, NP]
    smax = _group_max(sr, BT, GP, G, NP)  # [BT, NP]
    past = pg[None, :] < own_t[:, None]
    z = (smax - theta_t[:, None]) * inv_tau
    # a finite "minus infinity" keeps 0 * bias NaN-free in the dot below (fp16 range is small)
    if q.dtype == tl.float16:
        neg_big = -30000.0
    else:
        neg_big = -1.0e30
    if HARD:
        gb = tl.where(past & (smax <= theta_t[:, None]), neg_big, 0.0)
    else:
        gb = tl.maximum(tl.where(past, _logsigmoid(z), 0.0) * 1.4426950408889634, neg_big)
    s = _mm(q, tl.trans(k), input_precision=PREC) * sm_scale2
    s = _pages_to_tokens(_to_rows(gb, BT, GP, NP), s, q.dtype, BN, S, PREC)
    if MASK:
        kn = n0 + tl.arange(0, BN)
        ok = (kn[None, :] <= t[:, None]) & (kn[None, :] < n_b)
        s = tl.where(ok, s, float("-inf"))
    return s, sr, smax, z, past, mh, ml


@triton.jit
def _gate_grad_rows(ds, ds_lp, sr, smax, z, past, inv_tau, BT: tl.constexpr, GP: tl.constexpr,
                    G: tl.constexpr, NP: tl.constexpr, S: tl.constexpr, PAGE_DOT: tl.constexpr,
                    PREC: tl.constexpr, LO_GRAD: tl.constexpr):
    """d score per row [BM, NP]: page/head sums of d logit, times dlogsig/dscore, to argmax head.

    PAGE_DOT sums the tokens of each page with a 0/1 [BN, NP] matrix on the tensor cores (from
    ds in the input dtype, as the dk/dq dots use it) instead of a [BM, NP, S] reshape.
    """
    BM: tl.constexpr = BT * GP
    if PAGE_DOT:
        e = ((tl.arange(0, NP * S)[:, None] // S) == tl.arange(0, NP)[None, :]).to(
            tl.float32).to(ds_lp.dtype)
        dpage = _mm(ds_lp, e, input_precision=PREC)
        if LO_GRAD and ds_lp.dtype != tl.float32:  # + low half of dS: page sums feed 1/tau
            dpage = _mm((ds - ds_lp.to(tl.float32)).to(ds_lp.dtype), e, dpage,
                        input_precision=PREC)
    else:
        dpage = tl.sum(tl.reshape(ds, (BM, NP, S)), axis=2)  # [BM, NP]
    dgate = tl.sum(tl.reshape(dpage, (BT, GP, NP)), axis=1)  # [BT, NP]
    dscore = tl.where(past, dgate * inv_tau / (1.0 + tl.exp(z)), 0.0)
    hit = sr == _to_rows(smax, BT, GP, NP)
    if GP != G:
        gg = (tl.arange(0, BM) % GP) < G
        hit = hit & gg[:, None]
    hitf = hit.to(tl.float32)
    cnt = tl.sum(tl.reshape(hitf, (BT, GP, NP)), axis=1)
    return hitf * _to_rows(dscore / tl.maximum(cnt, 1.0), BT, GP, NP)


@triton.jit
def _load_rows(PTR, t0, L, D: tl.constexpr, BT: tl.constexpr, GP: tl.constexpr,
               G: tl.constexpr):
    """Rows (position, head) of one KV group: PTR is already offset to the group's first head
    ([B, H, L, D] layout); returns the [BM, D] load and the int32 row offsets (head * L + t)."""
    BM: tl.constexpr = BT * GP
    rows = tl.arange(0, BM)
    t = t0 + rows // GP
    g = rows % GP
    row_ok = (g < G) & (t < L)
    roff = tl.minimum(g, G - 1) * L + t
    offs_d = tl.arange(0, D)
    x = tl.load(PTR + (roff[:, None] * D + offs_d[None, :]), mask=row_ok[:, None], other=0.0)
    return x, t, row_ok, roff


# ----------------------------------------------------------------------------- page stats
@triton.jit
def _stats_kernel(K, MH, ML, MEAN, STD, L, P, D: tl.constexpr, S: tl.constexpr,
                  NPB: tl.constexpr, EXACT: tl.constexpr):
    pid_p = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    pg = pid_p * NPB + tl.arange(0, NPB)
    tok = pg[:, None] * S + tl.arange(0, S)[None, :]  # [NPB, S]
    offs_d = tl.arange(0, D)
    ptr = K + (bh * L + tok)[:, :, None] * D + offs_d[None, None, :]
    inside = (tok < L)[:, :, None]
    kk = tl.load(ptr, mask=inside, other=0.0).to(tl.float32)
    cnt = tl.maximum(tl.minimum(L - pg * S, S), 1).to(tl.float32)
    if EXACT:  # IEEE division / square root (the defaults are div.full / sqrt.approx)
        mean = tl.div_rn(tl.sum(kk, axis=1), tl.broadcast_to(cnt[:, None], (NPB, D)))
    else:
        mean = tl.sum(kk, axis=1) / cnt[:, None]
    # two-pass (centred) variance: E||k||^2 - ||mean||^2 loses ~2 digits to cancellation in
    # float32, and the gate amplifies std errors (scores ~60 vs tau 0.5)
    dev = tl.where(inside, kk - mean[:, None, :], 0.0)
    if EXACT:
        std = tl.sqrt_rn(tl.div_rn(tl.sum(tl.sum(dev * dev, axis=2), axis=1), cnt))
    else:
        std = tl.sqrt(tl.sum(tl.sum(dev * dev, axis=2), axis=1) / cnt)
    hi = mean.to(MH.dtype.element_ty)
    lo = (mean - hi.to(tl.float32)).to(ML.dtype.element_ty)
    pm = pg < P
    off = (bh * P + pg)[:, None] * D + offs_d[None, :]
    tl.store(MH + off, hi, mask=pm[:, None])
    tl.store(ML + off, lo, mask=pm[:, None])
    tl.store(MEAN + off, mean, mask=pm[:, None])
    tl.store(STD + bh * P + pg, std, mask=pm)


# ------------------------------------------------------------------------------ thresholds
@triton.jit
def _scores_kernel(Q, QN, MH, ML, STD, SCR, L, H, Hkv, P, l0, Lc, PW, lam,
                   D: tl.constexpr, BT: tl.constexpr, GP: tl.constexpr, G: tl.constexpr,
                   NPC: tl.constexpr, S: tl.constexpr, USE_LO: tl.constexpr,
                   PREC: tl.constexpr, EXACT: tl.constexpr):
    pid_t = tl.program_id(0)
    pid_p = tl.program_id(1)
    bh = tl.program_id(2)
    b = bh // Hkv
    kvh = bh % Hkv
    hb = (b * H + kvh * G).to(tl.int64) * L
    t0 = l0 + pid_t * BT
    p0 = pid_p * NPC
    last_t = tl.minimum(t0 + BT, L) - 1
    if p0 < last_t // S:  # some row of this block has a past page in this chunk
        q, _t, row_ok, roff = _load_rows(Q + hb * D, t0, L, D, BT, GP, G)
        qnorm = _qnorm(q, QN + hb, roff, row_ok, EXACT)
        offs_d = tl.arange(0, D)
        pg = p0 + tl.arange(0, NPC)
        pmask = pg < P
        base = bh.to(tl.int64) * P
        mh = tl.load(MH + (base + pg)[:, None] * D + offs_d[None, :], mask=pmask[:, None],
                     other=0.0)
        ml = tl.load(ML + (base + pg)[:, None] * D + offs_d[None, :], mask=pmask[:, None],
                     other=0.0)
        st = tl.load(STD + base + pg, mask=pmask, other=0.0)
        sr = _row_page_scores(q, qnorm, mh, ml, st, lam, USE_LO, PREC, EXACT)
        smax = _group_max(sr, BT, GP, G, NPC)  # [BT, NPC]
        tp = t0 + tl.arange(0, BT)
        ok = (pg[None, :] < (tp // S)[:, None]) & (tp < L)[:, None] & (pg < PW)[None, :]
        dst = SCR + ((bh.to(tl.int64) * Lc + (tp - l0))[:, None] * PW + pg[None, :])
        tl.store(dst, smax, mask=ok)


@triton.jit
def _select_kernel(SCR, THETA, L, l0, Lc, PW, KP, R: tl.constexpr, PPAD: tl.constexpr,
                   S: tl.constexpr):
    """theta = midpoint of the KP-th and (KP+1)-th largest past-page scores (exact, bitwise)."""
    pid = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    tp = l0 + pid * R + tl.arange(0, R)
    own = tp // S
    pg = tl.arange(0, PPAD)
    ok = (pg[None, :] < own[:, None]) & (tp < L)[:, None] & (pg < PW)[None, :]
    x = tl.load(SCR + ((bh * Lc + (tp - l0))[:, None] * PW + pg[None, :]), mask=ok, other=0.0)
    xi = x.to(tl.int32, bitcast=True)
    key = xi ^ ((xi >> 31) & 0x7FFFFFFF)  # signed-int order == float order
    int_min = tl.full([R, PPAD], 1, tl.int32) << 31
    key = tl.where(ok, key, int_min)
    # largest v with count(key >= v) >= KP + 1, built bit by bit from the sign bit down
    ans = tl.full([R], 1, tl.int32) << 31
    zero = tl.zeros([R], tl.int32)
    cnt = tl.sum((key >= zero[:, None]).to(tl.int32), axis=1)
    ans = tl.where(cnt >= KP + 1, zero, ans)
    for i in tl.static_range(31):
        cand = ans | (1 << (30 - i))
        cnt = tl.sum((key >= cand[:, None]).to(tl.int32), axis=1)
        ans = tl.where(cnt >= KP + 1, cand, ans)
    above = key > ans[:, None]
    n_above = tl.sum(above.to(tl.int32), axis=1)
    int_max = ~int_min
    nxt = tl.min(tl.where(above, key, int_max), axis=1)
    a_key = tl.where(n_above >= KP, nxt, ans)
    b_f = (ans ^ ((ans >> 31) & 0x7FFFFFFF)).to(tl.float32, bitcast=True)
    a_f = (a_key ^ ((a_key >> 31) & 0x7FFFFFFF)).to(tl.float32, bitcast=True)
    theta = (a_f + b_f) * 0.5
    theta = tl.where(own >= KP + 1, theta, float("-inf"))
    tl.store(THETA + bh * L + tp, theta, mask=tp < L)


# --------------------------------------------------------------------------------- forward
@triton.jit
def _fwd_step(q, qnorm, t, theta_t, own_t, n0, n_b, K, V, kv_base, L, MH, ML, STD, page_base, P,
              sm_scale2, lam, inv_tau, m_i, l_i, acc, D: tl.constexpr, BT: tl.constexpr,
              GP: tl.constexpr, G: tl.constexpr, BN: tl.constexpr, S: tl.constexpr,
              HARD: tl.constexpr, MASK: tl.constexpr, USE_LO: tl.constexpr, PREC: tl.constexpr,
              EXACT: tl.constexpr):
    """One key block of the online-softmax forward."""
    offs_d = tl.arange(0, D)
    kn = n0 + tl.arange(0, BN)
    if MASK:
        kmask = (kn < L)[:, None]
        k = tl.load((K + kv_base * D) + (kn[:, None] * D + offs_d[None, :]), mask=kmask, other=0.0)
        v = tl.load((V + kv_base * D) + (kn[:, None] * D + offs_d[None, :]), mask=kmask, other=0.0)
    else:
        k = tl.load((K + kv_base * D) + (kn[:, None] * D + offs_d[None, :]))
        v = tl.load((V + kv_base * D) + (kn[:, None] * D + offs_d[None, :]))
    s, _sr, _smax, _z, _past, _mh, _ml = _tile(q, qnorm, k, t, theta_t, own_t, n0, n_b, MH, ML, STD,
                                          page_base, P, sm_scale2, lam, inv_tau, D, BT, GP, G,
                                          BN, S, HARD, MASK, USE_LO, PREC, EXACT)
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m_i - m_use)
    p = tl.exp2(s - m_use[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = _acc_mm(p.to(v.dtype), v, acc * alpha[:, None], PREC, EXACT)
    return m_new, l_i, acc


@triton.jit
def _fwd_kernel(Q, QN, K, V, MH, ML, STD, THETA, SEQ, O, LSE, L, H, Hkv, P, sm_scale2, lam,
                inv_tau, D: tl.constexpr, BT: tl.constexpr, GP: tl.constexpr, G: tl.constexpr,
                BN: tl.constexpr, S: tl.constexpr, HARD: tl.constexpr, USE_LO: tl.constexpr,
                PREC: tl.constexpr, HAS_SEQ: tl.constexpr, REV: tl.constexpr,
                EXACT: tl.constexpr):
    BM: tl.constexpr = BT * GP
    pid_t = tl.program_id(0)
    if REV:  # longest (latest) query blocks first: shorter tail of the causal triangle
        pid_t = tl.num_programs(0) - 1 - pid_t
    bh = tl.program_id(1)
    b = bh // Hkv
    kvh = bh % Hkv
    hb = (b * H + kvh * G).to(tl.int64) * L
    t0 = pid_t * BT
    n_b = L
    if HAS_SEQ:
        n_b = tl.minimum(tl.load(SEQ + b), L)
    q, t, row_ok, roff = _load_rows(Q + hb * D, t0, L, D, BT, GP, G)
    qnorm = _qnorm(q, QN + hb, roff, row_ok, EXACT)
    tp = t0 + tl.arange(0, BT)
    theta_t = tl.load(THETA + bh.to(tl.int64) * L + tp, mask=tp < L, other=float("-inf"))
    own_t = tp // S
    kv_base = bh.to(tl.int64) * L
    page_base = bh.to(tl.int64) * P
    offs_d = tl.arange(0, D)
    m_i = tl.full([BM], float("-inf"), tl.float32)
    l_i = tl.zeros([BM], tl.float32)
    acc = tl.zeros([BM, D], tl.float32)
    t_hi = tl.where(t0 < n_b, tl.minimum(t0 + BT, n_b), 0)
    n_full = tl.minimum((t0 // BN) * BN, t_hi)
    for n0 in range(0, n_full, BN):
        m_i, l_i, acc = _fwd_step(q, qnorm, t, theta_t, own_t, n0, n_b, K, V, kv_base, L, MH, ML,
                                  STD, page_base, P, sm_scale2, lam, inv_tau, m_i, l_i, acc, D,
                                  BT, GP, G, BN, S, HARD, False, USE_LO, PREC, EXACT)
    for n0 in range(n_full, t_hi, BN):
        m_i, l_i, acc = _fwd_step(q, qnorm, t, theta_t, own_t, n0, n_b, K, V, kv_base, L, MH, ML,
                                  STD, page_base, P, sm_scale2, lam, inv_tau, m_i, l_i, acc, D,
                                  BT, GP, G, BN, S, HARD, True, USE_LO, PREC, EXACT)
    good = row_ok & (t < n_b) & (l_i > 0)
    if EXACT:
        o = tl.div_rn(acc, tl.broadcast_to(tl.where(good, l_i, 1.0)[:, None], (BM, D)))
    else:
        o = acc / tl.where(good, l_i, 1.0)[:, None]
    o = tl.where(good[:, None], o, 0.0)
    tl.store((O + hb * D) + (roff[:, None] * D + offs_d[None, :]), o.to(O.dtype.element_ty),
             mask=row_ok[:, None])
    lse = tl.where(good, m_i + tl.log2(tl.where(good, l_i, 1.0)), float("inf"))
    tl.store((LSE + hb) + roff, lse, mask=row_ok)


# -------------------------------------------------------------------------------- backward
@triton.jit
def _bwd_pre_kernel(O, DO, DELTA, N, D: tl.constexpr, BR: tl.constexpr):
    r = tl.program_id(0) * BR + tl.arange(0, BR)
    offs_d = tl.arange(0, D)
    m = (r < N)[:, None]
    ptr = r.to(tl.int64)[:, None] * D + offs_d[None, :]
    o = tl.load(O + ptr, mask=m, other=0.0).to(tl.float32)
    do = tl.load(DO + ptr, mask=m, other=0.0).to(tl.float32)
    tl.store(DELTA + r, tl.sum(o * do, axis=1), mask=r < N)


@triton.jit
def _dq_step(q, qnorm, do, lse, delta, t, theta_t, own_t, n0, n_b, K, V, kv_base, L, MH, ML,
             STD, page_base, P, sm_scale, sm_scale2, lam, inv_tau, dq, D: tl.constexpr,
             BT: tl.constexpr, GP: tl.constexpr, G: tl.constexpr, BN: tl.constexpr,
             S: tl.constexpr, HARD: tl.constexpr, MASK: tl.constexpr, USE_LO: tl.constexpr,
             PREC: tl.constexpr, PAGE_DOT: tl.constexpr, LO_GRAD: tl.constexpr,
             EXACT: tl.constexpr):
    offs_d = tl.arange(0, D)
    kn = n0 + tl.arange(0, BN)
    kmask = (kn < L)[:, None]
    k = tl.load((K + kv_base * D) + (kn[:, None] * D + offs_d[None, :]), mask=kmask, other=0.0)
    v = tl.load((V + kv_base * D) + (kn[:, None] * D + offs_d[None, :]), mask=kmask, other=0.0)
    s, sr, smax, z, past, mh, ml = _tile(q, qnorm, k, t, theta_t, own_t, n0, n_b, MH, ML, STD,
                                     page_base, P, sm_scale2, lam, inv_tau, D, BT, GP, G, BN,
                                     S, HARD, MASK, USE_LO, PREC, EXACT)
    p = tl.exp2(s - lse[:, None])
    dp = _mm(do, tl.trans(v), input_precision=PREC)
    ds = p * (dp - delta[:, None])
    ds_lp = ds.to(k.dtype)
    if EXACT:  # this key block's part from zero, then added (see _acc_mm)
        blk = _mm(ds_lp, k, input_precision=PREC)
    else:
        blk = _mm(ds_lp, k, dq, input_precision=PREC)
    if not HARD:
        dsr = _gate_grad_rows(ds, ds_lp, sr, smax, z, past, inv_tau, BT, GP, G, BN // S, S,
                              PAGE_DOT, PREC, LO_GRAD)
        blk = _pages_dot(dsr / sm_scale, mh, blk, k.dtype, PREC)
        if USE_LO and LO_GRAD:
            blk = _pages_dot(dsr / sm_scale, ml, blk, k.dtype, PREC)
    if EXACT:
        blk = dq + blk
    return blk


@triton.jit
def _bwd_dq_kernel(Q, QN, K, V, MH, ML, STD, THETA, SEQ, DO, LSE, DELTA, DQ, L, H, Hkv, P,
                   sm_scale, sm_scale2, lam, inv_tau, D: tl.constexpr, BT: tl.constexpr,
                   GP: tl.constexpr, G: tl.constexpr, BN: tl.constexpr, S: tl.constexpr,
                   HARD: tl.constexpr, USE_LO: tl.constexpr, PREC: tl.constexpr,
                   HAS_SEQ: tl.constexpr, PAGE_DOT: tl.constexpr, LO_GRAD: tl.constexpr,
                   EXACT: tl.constexpr, REV: tl.constexpr):
    pid_t = tl.program_id(0)
    if REV:  # longest (latest) query blocks first
        pid_t = tl.num_programs(0) - 1 - pid_t
    bh = tl.program_id(1)
    b = bh // Hkv
    kvh = bh % Hkv
    hb = (b * H + kvh * G).to(tl.int64) * L
    t0 = pid_t * BT
    n_b = L
    if HAS_SEQ:
        n_b = tl.minimum(tl.load(SEQ + b), L)
    q, t, row_ok, roff = _load_rows(Q + hb * D, t0, L, D, BT, GP, G)
    do, t, row_ok, roff = _load_rows(DO + hb * D, t0, L, D, BT, GP, G)
    qnorm = _qnorm(q, QN + hb, roff, row_ok, EXACT)
    lse = tl.load((LSE + hb) + roff, mask=row_ok, other=float("inf"))
    delta = tl.load((DELTA + hb) + roff, mask=row_ok, other=0.0)
    tp = t0 + tl.arange(0, BT)
    theta_t = tl.load(THETA + bh.to(tl.int64) * L + tp, mask=tp < L, other=float("-inf"))
    own_t = tp // S
    kv_base = bh.to(tl.int64) * L
    page_base = bh.to(tl.int64) * P
    offs_d = tl.arange(0, D)
    dq = tl.zeros([BT * GP, D], tl.float32)
    t_hi = tl.where(t0 < n_b, tl.minimum(t0 + BT, n_b), 0)
    n_full = tl.minimum((t0 // BN) * BN, t_hi)
    for n0 in range(0, n_full, BN):
        dq = _dq_step(q, qnorm, do, lse, delta, t, theta_t, own_t, n0, n_b, K, V, kv_base, L,
                      MH, ML, STD, page_base, P, sm_scale, sm_scale2, lam, inv_tau, dq, D, BT,
                      GP, G, BN, S, HARD, False, USE_LO, PREC, PAGE_DOT, LO_GRAD, EXACT)
    for n0 in range(n_full, t_hi, BN):
        dq = _dq_step(q, qnorm, do, lse, delta, t, theta_t, own_t, n0, n_b, K, V, kv_base, L,
                      MH, ML, STD, page_base, P, sm_scale, sm_scale2, lam, inv_tau, dq, D, BT,
                      GP, G, BN, S, HARD, True, USE_LO, PREC, PAGE_DOT, LO_GRAD, EXACT)
    dq = dq * sm_scale
    tl.store((DQ + hb * D) + (roff[:, None] * D + offs_d[None, :]), dq.to(DQ.dtype.element_ty),
             mask=row_ok[:, None])


@triton.jit
def _dkdv_step(k, v, n0, n_b, t0, Q, QN, DO, LSE, DELTA, THETA, hb, bh, L, H, MH, ML, STD,
               page_base, P, sm_scale, sm_scale2, lam, inv_tau, dk, dv, dstd, D: tl.constexpr,
               BT: tl.constexpr, GP: tl.constexpr, G: tl.constexpr, BN: tl.constexpr,
               S: tl.constexpr, HARD: tl.constexpr, MASK: tl.constexpr, USE_LO: tl.constexpr,
               PREC: tl.constexpr, PAGE_DOT: tl.constexpr, LO_GRAD: tl.constexpr,
               EXACT: tl.constexpr):
    q, t, row_ok, roff = _load_rows(Q + hb * D, t0, L, D, BT, GP, G)
    do, t, row_ok, roff = _load_rows(DO + hb * D, t0, L, D, BT, GP, G)
    qnorm = _qnorm(q, QN + hb, roff, row_ok, EXACT)
    lse = tl.load((LSE + hb) + roff, mask=row_ok, other=float("inf"))
    delta = tl.load((DELTA + hb) + roff, mask=row_ok, other=0.0)
    tp = t0 + tl.arange(0, BT)
    theta_t = tl.load(THETA + bh.to(tl.int64) * L + tp, mask=tp < L, other=float("-inf"))
    own_t = tp // S
    s, sr, smax, z, past, _mh, _ml = _tile(q, qnorm, k, t, theta_t, own_t, n0, n_b, MH, ML, STD,
                                     page_base, P, sm_scale2, lam, inv_tau, D, BT, GP, G, BN,
                                     S, HARD, MASK, USE_LO, PREC, EXACT)
    p = tl.exp2(s - lse[:, None])
    dv = _acc_mm(tl.trans(p.to(v.dtype)), do, dv, PREC, EXACT)
    dp = _mm(do, tl.trans(v), input_precision=PREC)
    ds = p * (dp - delta[:, None])
    ds_lp = ds.to(q.dtype)
    if not HARD:
        dsr = _gate_grad_rows(ds, ds_lp, sr, smax, z, past, inv_tau, BT, GP, G, BN // S, S,
                              PAGE_DOT, PREC, LO_GRAD)
        # d mean_p = sum_rows dsr * q and d k_j += d mean_p / S: fold into the dk dot as
        # dsr expanded to the page's tokens, / (S * sm_scale) since dk is scaled at the end
        ds = _pages_to_tokens(dsr * (1.0 / (S * sm_scale)), ds, q.dtype, BN, S, PREC)
        ds_lp = ds.to(q.dtype)
        dstd += tl.sum(dsr * (lam * qnorm)[:, None], axis=0)
    dk = _acc_mm(tl.trans(ds_lp), q, dk, PREC, EXACT)
    return dk, dv, dstd


@triton.jit
def _bwd_dkdv_kernel(Q, QN, K, V, MH, ML, MEAN, STD, THETA, SEQ, DO, LSE, DELTA, DK, DV, L, H,
                     Hkv, P, sm_scale, sm_scale2, lam, inv_tau, D: tl.constexpr,
                     BT: tl.constexpr, GP: tl.constexpr, G: tl.constexpr, BN: tl.constexpr,
                     S: tl.constexpr, HARD: tl.constexpr, USE_LO: tl.constexpr,
                     PREC: tl.constexpr, HAS_SEQ: tl.constexpr, PAGE_DOT: tl.constexpr,
                     LO_GRAD: tl.constexpr, EXACT: tl.constexpr):
    NP: tl.constexpr = BN // S
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // Hkv
    kvh = bh % Hkv
    hb = (b * H + kvh * G).to(tl.int64) * L
    n0 = pid_n * BN
    n_b = L
    if HAS_SEQ:
        n_b = tl.minimum(tl.load(SEQ + b), L)
    kv_base = bh.to(tl.int64) * L
    page_base = bh.to(tl.int64) * P
    offs_d = tl.arange(0, D)
    kn = n0 + tl.arange(0, BN)
    kmask = (kn < L)[:, None]
    k = tl.load((K + kv_base * D) + (kn[:, None] * D + offs_d[None, :]), mask=kmask, other=0.0)
    v = tl.load((V + kv_base * D) + (kn[:, None] * D + offs_d[None, :]), mask=kmask, other=0.0)
    dk = tl.zeros([BN, D], tl.float32)
    dv = tl.zeros([BN, D], tl.float32)
    dstd = tl.zeros([NP], tl.float32)
    t_diag = tl.minimum(n0 + BN, n_b)
    for t0 in range(n0, t_diag, BT):
        dk, dv, dstd = _dkdv_step(k, v, n0, n_b, t0, Q, QN, DO, LSE, DELTA, THETA, hb, bh, L, H,
                                  MH, ML, STD, page_base, P, sm_scale, sm_scale2, lam, inv_tau,
                                  dk, dv, dstd, D, BT, GP, G, BN, S,
                                  HARD, True, USE_LO, PREC, PAGE_DOT, LO_GRAD, EXACT)
    for t0 in range(n0 + BN, n_b, BT):
        dk, dv, dstd = _dkdv_step(k, v, n0, n_b, t0, Q, QN, DO, LSE, DELTA, THETA, hb, bh, L, H,
                                  MH, ML, STD, page_base, P, sm_scale, sm_scale2, lam, inv_tau,
                                  dk, dv, dstd, D, BT, GP, G, BN, S,
                                  HARD, False, USE_LO, PREC, PAGE_DOT, LO_GRAD, EXACT)
    dk = dk * sm_scale
    if not HARD:
        # page std -> keys of the page (the mean part is already in dk; only full pages ever
        # receive a gradient). d std / d k_j = (k_j - mean_p) / (S * std_p)
        pg = n0 // S + tl.arange(0, NP)
        pmask = pg < P
        st = tl.load((STD + page_base) + pg, mask=pmask, other=0.0)
        if EXACT:
            coef = tl.where(st > 0, tl.div_rn(dstd, S * tl.where(st > 0, st, 1.0)), 0.0)
        else:
            coef = tl.where(st > 0, dstd / (S * tl.where(st > 0, st, 1.0)), 0.0)
        tok_pg = (n0 + tl.arange(0, BN)) // S
        mean_t = tl.load((MEAN + page_base * D) + (tok_pg[:, None] * D + offs_d[None, :]),
                         mask=(tok_pg < P)[:, None], other=0.0)
        coef_t = tl.reshape(tl.broadcast_to(coef[:, None], (NP, S)), (BN,))
        dk += coef_t[:, None] * (k.to(tl.float32) - mean_t)
    dst = kn[:, None] * D + offs_d[None, :]
    tl.store((DK + kv_base * D) + dst, dk.to(DK.dtype.element_ty), mask=kmask)
    tl.store((DV + kv_base * D) + dst, dv.to(DV.dtype.element_ty), mask=kmask)


# --------------------------------------------------------------------------------- driver
def _next_pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


# Block-size overrides for benchmarks/tuning, e.g. {"rows_fwd": 64, "fwd_warps": 4}; also read
# from the JSON file named by UNIQUE_SOFTMASK_CONFIG (a bench's chosen config, for GPU tests).
CONFIG_OVERRIDES: dict = {}
if os.environ.get("UNIQUE_SOFTMASK_CONFIG"):
    with open(os.environ["UNIQUE_SOFTMASK_CONFIG"]) as _f:
        CONFIG_OVERRIDES.update(json.load(_f))


def _exact(dtype: torch.dtype) -> bool:
    """Whether the float32 accuracy measures apply (float32 input, not switched off by the
    "fp32_exact" override). Why: the gate multiplies score rounding by |score| / tau (~120 at
    scores ~60, tau 0.5); without them Triton folds the score offset into the page-score dot's
    FMA chain and the GPU's fp32 errors grow several-fold over a plain float32 PyTorch evaluation
    of the reference (module docstring, "float32 accuracy").
    Costs nothing on the bf16/fp16 path (compiled out)."""
    return dtype == torch.float32 and bool(CONFIG_OVERRIDES.get("fp32_exact", True))


def query_norms(q: torch.Tensor) -> torch.Tensor:
    """||q|| [B, H, L] float32, computed in float64 (correctly rounded, one value per row shared
    by the threshold, forward and backward kernels)."""
    return torch.linalg.vector_norm(q, dim=-1, dtype=torch.float64).float().contiguous()


class _Cfg:
    """Block sizes: BN keys per block (a multiple of S with >= 8 pages, so the page <-> token
    dots have K = 2 * pages >= 16), rows = query positions x GP heads per block."""

    def __init__(self, D: int, S: int, G: int, dtype: torch.dtype):
        self.GP = _next_pow2(G)
        interp = _interpret()
        ov = dict(CONFIG_OVERRIDES)
        if dtype == torch.float32 and not interp:  # fp32 tiles are twice as large
            ov = {**ov, "rows_fwd": 64, "rows_dq": 64, "rows_bwd": 64, "stages": 1,
                  "bwd_stages": 1, "dq_stages": 1}
        bn_min = max(8 * S, 16)
        self.BN = max(ov.get("bn_fwd", 64 if interp else 128), bn_min)
        self.BN_dq = max(ov.get("bn_dq", 64), bn_min)
        self.BN_kv = max(ov.get("bn_kv", 64), bn_min)
        rows_fwd = ov.get("rows_fwd", 64 if interp else 128)
        rows_dq = ov.get("rows_dq", 64 if interp else 128)
        rows_kv = ov.get("rows_bwd", 64 if interp else 128)
        self.use_lo = dtype != torch.float32
        self.prec = "ieee" if dtype == torch.float32 else "tf32"
        self.page_dot = bool(ov.get("page_dot", True))
        # bf16/fp16: the low halves of dS (page sums) and of the page mean (dq page term), for
        # bf16 gradient accuracy at ~10% of fwd+bwd time (bench/NOTES.md)
        self.lo_grad = bool(ov.get("lo_grad", True))
        self.BT_fwd = max(1, min(rows_fwd // self.GP, self.BN))
        self.BT_dq = max(1, min(rows_dq // self.GP, self.BN_dq))
        self.BT_dkdv = max(1, min(rows_kv // self.GP, self.BN_kv))
        self.fwd_warps = ov.get("fwd_warps", 4 if interp else 8)
        self.dq_warps = ov.get("dq_warps", 4 if interp else 8)
        self.bwd_warps = ov.get("bwd_warps", 4 if interp else 8)
        self.stages = ov.get("stages", 1 if interp else 2)
        self.bwd_stages = ov.get("bwd_stages", self.stages if interp else 3)
        self.dq_stages = ov.get("dq_stages", self.bwd_stages)
        self.rev = bool(ov.get("rev", False))
        # float32 only: IEEE sqrt/division, ||q|| computed once in float64 and shared by all
        # kernels, block-local dot accumulation (see _exact); off = the bf16 code path in fp32
        self.exact = _exact(dtype)
        self.streams = int(ov.get("streams", 1))


def page_stats_triton(k: torch.Tensor, page_size: int):
    """mean_hi, mean_lo (k.dtype), mean (float32) [B*Hkv, P, D] and std [B*Hkv, P] (float32).

    (float32: IEEE division and square root, see _exact.)"""
    B, Hkv, L, D = k.shape
    P = -(-L // page_size)
    kc = k.contiguous()
    mh = torch.empty(B * Hkv, P, D, device=k.device, dtype=k.dtype)
    ml = torch.empty_like(mh)
    mean = torch.empty(B * Hkv, P, D, device=k.device, dtype=torch.float32)
    std = torch.empty(B * Hkv, P, device=k.device, dtype=torch.float32)
    npb = max(1, 32 // page_size)
    _stats_kernel[(triton.cdiv(P, npb), B * Hkv)](kc, mh, ml, mean, std, L, P, D=D, S=page_size,
                                                  NPB=npb, EXACT=_exact(k.dtype))
    return mh, ml, mean, std


def thresholds_triton(q, mh, ml, std, *, Hkv: int, page_size: int, k_pages: int, lam: float,
                      qn: torch.Tensor | None = None):
    """theta [B*Hkv, L] float32 (-inf where the query sees <= k pages), no L x L tensor.

    qn: query_norms(q), used (and computed here if None) on the float32 path (see _exact)."""
    B, H, L, D = q.shape
    G = H // Hkv
    GP = _next_pow2(G)
    P = mh.shape[1]
    S = page_size
    theta = torch.full((B * Hkv, L), float("-inf"), device=q.device, dtype=torch.float32)
    first = k_pages * S  # first position whose query sees > k pages
    if first >= L:
        return theta
    use_lo = q.dtype != torch.float32
    prec = "ieee" if q.dtype == torch.float32 else "tf32"
    exact = _exact(q.dtype)
    if exact and qn is None:
        qn = query_norms(q)
    if not exact:
        qn = theta  # unused placeholder pointer
    bt = max(1, 64 // GP) if _interpret() else max(1, 128 // GP)
    npc = 64
    l0 = (first // bt) * bt
    scratch = None
    while l0 < L:
        pw_max = (L - 1) // S  # past pages of the last query
        lc = max(bt, (_SCRATCH_ELEMS // max(1, B * Hkv * pw_max)) // bt * bt)
        lc = min(lc, L - l0)
        l1 = l0 + lc
        pw = (l1 - 1) // S  # past pages needed in this chunk
        need = B * Hkv * lc * pw
        if scratch is None or scratch.numel() < need:
            scratch = torch.empty(need, device=q.device, dtype=torch.float32)
        grid = (triton.cdiv(lc, bt), triton.cdiv(pw, npc), B * Hkv)
        _scores_kernel[grid](q, qn, mh, ml, std, scratch, L, H, Hkv, P, l0, lc, pw, lam, D=D,
                             BT=bt, GP=GP, G=G, NPC=npc, S=S, USE_LO=use_lo, PREC=prec,
                             EXACT=exact)
        ppad = _next_pow2(pw)
        r = max(1, min(16, 4096 // ppad))
        _select_kernel[(triton.cdiv(lc, r), B * Hkv)](scratch, theta, L, l0, lc, pw, k_pages - 1,
                                                      R=r, PPAD=ppad, S=S)
        l0 = l1
    return theta


class SoftmaskFunction(torch.autograd.Function):
    """Autograd wrapper of the fused kernels (see module docstring)."""

    @staticmethod
    def forward(ctx, q, k, v, page_size, budget, tau, hard, lam, seqlens):
        B, H, L, D = q.shape
        Hkv = k.shape[1]
        G = H // Hkv
        S = page_size
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        cfg = _Cfg(D, S, G, q.dtype)
        mh, ml, mean, std = page_stats_triton(k, S)
        P = mh.shape[1]
        qn = query_norms(q) if cfg.exact else None
        theta = thresholds_triton(q, mh, ml, std, Hkv=Hkv, page_size=S,
                                  k_pages=budget // S, lam=lam, qn=qn)
        if qn is None:
            qn = theta  # unused placeholder pointer (the kernels compute ||q||)
        o = torch.empty_like(q)
        lse = torch.empty(B, H, L, device=q.device, dtype=torch.float32)
        has_seq = seqlens is not None
        seq = seqlens.to(device=q.device, dtype=torch.int32).contiguous() if has_seq else theta
        sm_scale = D ** -0.5
        inv_tau = 1.0 / tau
        grid = (triton.cdiv(L, cfg.BT_fwd), B * Hkv)
        _fwd_kernel[grid](q, qn, k, v, mh, ml, std, theta, seq, o, lse, L, H, Hkv, P,
                          sm_scale * LOG2E, lam, inv_tau, D=D, BT=cfg.BT_fwd, GP=cfg.GP, G=G,
                          BN=cfg.BN, S=S, HARD=hard, USE_LO=cfg.use_lo, PREC=cfg.prec,
                          HAS_SEQ=has_seq, REV=cfg.rev, EXACT=cfg.exact,
                          num_warps=cfg.fwd_warps, num_stages=cfg.stages)
        ctx.save_for_backward(q, qn, k, v, o, lse, mh, ml, mean, std, theta, seq)
        ctx.args = (S, hard, lam, inv_tau, has_seq)
        return o

    @staticmethod
    def backward(ctx, do):
        q, qn, k, v, o, lse, mh, ml, mean, std, theta, seq = ctx.saved_tensors
        S, hard, lam, inv_tau, has_seq = ctx.args
        B, H, L, D = q.shape
        Hkv = k.shape[1]
        G = H // Hkv
        P = mh.shape[1]
        cfg = _Cfg(D, S, G, q.dtype)
        do = do.contiguous()
        delta = torch.empty(B, H, L, device=q.device, dtype=torch.float32)
        n = B * H * L
        br = 64
        _bwd_pre_kernel[(triton.cdiv(n, br),)](o, do, delta, n, D=D, BR=br)
        sm_scale = D ** -0.5
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dv = torch.empty_like(v)
        common = {"D": D, "GP": cfg.GP, "G": G, "S": S, "HARD": hard, "USE_LO": cfg.use_lo,
                  "PREC": cfg.prec, "HAS_SEQ": has_seq, "PAGE_DOT": cfg.page_dot,
                  "LO_GRAD": cfg.lo_grad, "EXACT": cfg.exact}
        # dq and dk/dv are independent: with streams=2 (CUDA) the dq kernel runs on a side
        # stream so each kernel's causal tail overlaps the other's work
        side = None
        if cfg.streams > 1 and q.is_cuda and not _interpret():
            side = torch.cuda.Stream(device=q.device)
            side.wait_stream(torch.cuda.current_stream(q.device))
        with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
            _bwd_dq_kernel[(triton.cdiv(L, cfg.BT_dq), B * Hkv)](
                q, qn, k, v, mh, ml, std, theta, seq, do, lse, delta, dq, L, H, Hkv, P, sm_scale,
                sm_scale * LOG2E, lam, inv_tau, BT=cfg.BT_dq, BN=cfg.BN_dq, REV=cfg.rev,
                num_warps=cfg.dq_warps, num_stages=cfg.dq_stages, **common)
        _bwd_dkdv_kernel[(triton.cdiv(L, cfg.BN_kv), B * Hkv)](
            q, qn, k, v, mh, ml, mean, std, theta, seq, do, lse, delta, dk, dv, L, H, Hkv, P,
            sm_scale, sm_scale * LOG2E, lam, inv_tau, BT=cfg.BT_dkdv, BN=cfg.BN_kv,
            num_warps=cfg.bwd_warps, num_stages=cfg.bwd_stages, **common)
        if side is not None:
            torch.cuda.current_stream(q.device).wait_stream(side)
            for t in (q, qn, k, v, mh, ml, std, theta, seq, do, lse, delta, dq):
                t.record_stream(side)
        return dq, dk, dv, None, None, None, None, None, None


def softmask_attention_triton(q, k, v, *, page_size, budget, tau, hard, lam, seqlens=None,
                              length_multiple=None):
    """Fused soft/hard UNIQUE page-masked causal attention (inputs already validated).

    length_multiple: pad the sequence axis to a multiple of this (None: CUDA_LENGTH_MULTIPLE on
    CUDA, none on the CPU interpreter; see CUDA_LENGTH_MULTIPLE); the output is cut back to L."""
    L = q.shape[2]
    if length_multiple is None:
        length_multiple = CUDA_LENGTH_MULTIPLE if q.is_cuda else 1
    pad = -L % max(1, int(length_multiple))
    if pad:
        q, k, v = (torch.nn.functional.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
    out = SoftmaskFunction.apply(q, k, v, page_size, budget, tau, hard, lam, seqlens)
    return out[:, :, :L] if pad else out
