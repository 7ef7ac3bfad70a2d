"""Exact top-k page selection: radix select over float32 scores, one row per program.

Why radix select: a decoding step needs the k best of up to 16K+ pages per (sequence, KV head)
row, unordered; sorting is wasted work. Scores become order-preserving uint32 keys; a
bitwise search finds the k-th largest key T, counting keys >= a candidate over the row (held in
registers) per step, stopping early once exactly k keys are >= the prefix; optionally two bits
per step with the three candidate counts packed in one int64 reduction (16 reductions instead
of 32; off by default: slower than one bit with early exit except at 1K pages, bench/NOTES.md).
Keys > T are all taken and keys == T in ascending page order until exactly k are taken, so ties
go to the lower page index (same rule as reference.select_pages).
The physical page ids are gathered through the page table in the same kernel.

Rows with n_b <= k pages take all their pages (dense), in order. Output slots past
min(k, n_b) hold -1. Rows longer than MAX_BLOCK pages use a chunked variant that re-reads the
row from cache on each step.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .score import _pdl_enter, use_pdl

MAX_BLOCK = 16384
# Rows of up to this block start the one-bit search below the bits shared by bounds on the
# k-th largest key (_bounds_prefix; same selection, ~10 fewer counting steps); longer rows search
# from the top bit; faster at 1K- and 2K-page rows (with the register cap below), 4K+ rows
# untimed (bench/NOTES.md; 0 = off everywhere).
BOUNDS_MAX_BLOCK = 2048
# Launch configs by row block (CUDA). WARPS overrides the default warps (4 up to 2K pages, 8 up
# to 4K, else 16); MAXNREG caps registers per thread for (block, warps). 2K-page rows on 4 warps
# take ~115 registers with the bounds (4 programs per SM: 528 slots for batch 80's 640 rows, two
# waves); 96 gives 5 per SM, one wave (8 bytes of spill, sm_90).
# (4K-page rows with the bounds need (4096, 8): 128 to keep 2 per SM: 175 registers otherwise.)
WARPS: dict = {}
MAXNREG: dict = {(2048, 4): 96}


@triton.jit
def _keys(x, valid):
    x = tl.where(x == 0.0, 0.0, x)  # -0.0 ties with +0.0, as in the reference
    bits = x.to(tl.uint32, bitcast=True)
    key = tl.where((bits >> 31) != 0, bits ^ 0xFFFFFFFF, bits | 0x80000000)
    return tl.where(valid, key, 0)


@triton.jit
def _bounds_prefix(key, K, BLOCK: tl.constexpr):
    """Bounds on the K-th largest key T (K < valid keys), and the search start they give.
    lo: the smallest of G >= K group maxima (G distinct keys are >= it, so T >= lo; the groups
    are any partition of the row). hi: the largest key below the maximum m (T < m unless m
    occurs >= K times, then T = m), so the newest page's forced +inf does not loosen it.
    Returns (prefix, bit): the bits lo and hi share above their highest differing bit, and
    that bit (0 when lo == hi = T). On real scores the sign and exponent bits are shared, which
    saves ~8-10 of the ~20 counting steps."""
    G: tl.constexpr = min(256, BLOCK)
    G64: tl.constexpr = min(64, G)
    gm = tl.max(tl.reshape(key, (G, BLOCK // G), can_reorder=True), axis=1)
    gm64 = tl.max(tl.reshape(gm, (G64, G // G64), can_reorder=True), axis=1)
    zero = tl.zeros((), tl.uint32)
    lo = tl.where(K <= G64, tl.min(gm64, 0), tl.where(K <= G, tl.min(gm, 0), zero))
    m = tl.max(gm, 0)
    c_m = tl.sum((key == m).to(tl.int32))
    below = tl.max(tl.where(key == m, zero, key))
    hi = tl.where(c_m >= K, m, below)
    diff = lo ^ hi
    bit = tl.full((), 0x80000000, tl.uint32)
    while (bit != 0) & ((diff & bit) == 0):
        bit = bit >> 1
    low = bit | (bit >> 1)  # bit and every bit below it
    low = low | (low >> 2)
    low = low | (low >> 4)
    low = low | (low >> 8)
    low = low | (low >> 16)
    return lo ^ (lo & low), bit  # lo with those bits cleared


@triton.jit
def _select_row(s_row, o_row, l_row, pt_row, n, K, BLOCK: tl.constexpr, GATHER: tl.constexpr,
                LOGICAL: tl.constexpr, TWO_BITS: tl.constexpr, CG: tl.constexpr):
    """Top-K of one row of n <= BLOCK scores held in registers (or all n pages when n <= K),
    written unordered to o_row (physical ids via pt_row when GATHER) and l_row (logical).
    CG: read the scores through L2 only (they were written by other programs of this launch).
    TWO_BITS (the search mode): 0/False one bit per step from the top bit, 1/True two bits per
    step, 2 one bit per step from the bounds' shared prefix (_bounds_prefix; same result)."""
    offs = tl.arange(0, BLOCK)
    if n <= K:
        for c0 in range(0, K, BLOCK):
            o = c0 + offs
            om = o < K
            valid = o < n
            page = o
            if GATHER:
                page = tl.load(pt_row + o, mask=valid & om, other=-1)
            tl.store(o_row + o, tl.where(valid, page, -1), mask=om)
            if LOGICAL:
                tl.store(l_row + o, tl.where(valid, o, -1), mask=om)
    else:
        prefix = tl.zeros((), dtype=tl.uint32)
        v = offs < n
        if CG:
            x = tl.load(s_row + offs, mask=v, other=0.0, cache_modifier=".cg")
        else:
            x = tl.load(s_row + offs, mask=v, other=0.0)
        key = _keys(x, v)
        # cnt = number of keys >= prefix; stop early once exactly K keys are >= prefix
        cnt = tl.full((), BLOCK, tl.int32)
        if TWO_BITS == 1:
            # two bits per step: the three candidate counts packed in one int64 reduction
            unit = tl.full((), 0x40000000, tl.uint32)
            while (unit != 0) & (cnt != K):
                c1 = prefix | unit
                c2 = prefix | (unit << 1)
                c3 = prefix | (unit * 3)
                unit = unit >> 2
                packed = ((key >= c1).to(tl.int64) + ((key >= c2).to(tl.int64) << 21)
                          + ((key >= c3).to(tl.int64) << 42))
                tot = tl.sum(packed)
                n1 = (tot & 0x1FFFFF).to(tl.int32)
                n2 = ((tot >> 21) & 0x1FFFFF).to(tl.int32)
                n3 = (tot >> 42).to(tl.int32)
                prefix = tl.where(n3 >= K, c3, tl.where(n2 >= K, c2,
                                                        tl.where(n1 >= K, c1, prefix)))
                cnt = tl.where(n3 >= K, n3, tl.where(n2 >= K, n2,
                                                     tl.where(n1 >= K, n1, cnt)))
        else:
            bit = tl.full((), 0x80000000, tl.uint32)
            if TWO_BITS == 2:  # start below the bits that bounds lo <= T <= hi share
                prefix, bit = _bounds_prefix(key, K, BLOCK)
            while (bit != 0) & (cnt != K):
                cand = prefix | bit
                bit = bit >> 1
                c = tl.sum((key >= cand).to(tl.int32))
                prefix = tl.where(c >= K, cand, prefix)
                cnt = tl.where(c >= K, c, cnt)
        if cnt == K:  # exactly K keys >= prefix: take them all
            sel = key >= prefix
            pos = tl.cumsum(sel.to(tl.int32), 0) - 1
        else:  # prefix is the k-th largest key: all keys above it, ties in page order
            gt = key > prefix
            eq = (key == prefix) & v
            n_gt = tl.sum(gt.to(tl.int32))
            need = K - n_gt
            cgt = tl.cumsum(gt.to(tl.int32), 0)
            ceq = tl.cumsum(eq.to(tl.int32), 0)
            sel = gt | (eq & (ceq <= need))
            pos = tl.where(gt, cgt - 1, n_gt + ceq - 1)
        page = offs
        if GATHER:
            page = tl.load(pt_row + offs, mask=sel, other=-1)
        tl.store(o_row + pos, page, mask=sel)
        if LOGICAL:
            tl.store(l_row + pos, offs, mask=sel)


@triton.jit
def _topk_kernel(
    s_ptr, len_ptr, pt_ptr, out_ptr, lout_ptr,
    stride_sr, stride_ptb, stride_or, HKV, K, PAGE_SIZE,
    BLOCK: tl.constexpr, CHUNKED: tl.constexpr, GATHER: tl.constexpr, LOGICAL: tl.constexpr,
    TWO_BITS: tl.constexpr, PDL_ON: tl.constexpr,
):
    _pdl_enter(PDL_ON)
    row = tl.program_id(0).to(tl.int64)
    b = row // HKV
    n = (tl.load(len_ptr + b) + PAGE_SIZE - 1) // PAGE_SIZE
    offs = tl.arange(0, BLOCK)
    o_row = out_ptr + row * stride_or
    l_row = lout_ptr + row * stride_or
    s_row = s_ptr + row * stride_sr
    if not CHUNKED:  # noqa: SIM114 - CHUNKED is a constexpr, n a runtime value
        _select_row(s_row, o_row, l_row, pt_ptr + b * stride_ptb, n, K, BLOCK, GATHER,
                    LOGICAL, TWO_BITS, False)
    elif n <= K:
        _select_row(s_row, o_row, l_row, pt_ptr + b * stride_ptb, n, K, BLOCK, GATHER,
                    LOGICAL, TWO_BITS, False)
    else:
        prefix = tl.zeros((), dtype=tl.uint32)
        bit = tl.full((), 0x80000000, tl.uint32)
        for _ in range(32):
            cand = prefix | bit
            bit = bit >> 1
            cnt = 0
            for c0 in range(0, n, BLOCK):
                o = c0 + offs
                v = o < n
                key = _keys(tl.load(s_row + o, mask=v, other=0.0), v)
                cnt += tl.sum((key >= cand).to(tl.int32))
            prefix = tl.where(cnt >= K, cand, prefix)
        n_gt = 0
        for c0 in range(0, n, BLOCK):
            o = c0 + offs
            v = o < n
            key = _keys(tl.load(s_row + o, mask=v, other=0.0), v)
            n_gt += tl.sum((key > prefix).to(tl.int32))
        need = K - n_gt
        base_gt = 0
        base_eq = 0
        for c0 in range(0, n, BLOCK):
            o = c0 + offs
            v = o < n
            key = _keys(tl.load(s_row + o, mask=v, other=0.0), v)
            gt = key > prefix
            eq = (key == prefix) & v
            cgt = tl.cumsum(gt.to(tl.int32), 0)
            ceq = tl.cumsum(eq.to(tl.int32), 0)
            take_eq = eq & (base_eq + ceq <= need)
            sel = gt | take_eq
            pos = tl.where(gt, base_gt + cgt - 1, n_gt + base_eq + ceq - 1)
            page = o
            if GATHER:
                page = tl.load(pt_ptr + b * stride_ptb + o, mask=sel, other=-1)
            tl.store(o_row + pos, page, mask=sel)
            if LOGICAL:
                tl.store(l_row + pos, o, mask=sel)
            base_gt += tl.sum(gt.to(tl.int32))
            base_eq += tl.sum(eq.to(tl.int32))


def topk_pages(
    scores: torch.Tensor,
    lengths: torch.Tensor,
    page_size: int,
    k: int,
    page_table: torch.Tensor | None = None,
    logical: bool = False,
    out: torch.Tensor | None = None,
    block: int | None = None,
    num_warps: int | None = None,
    two_bits: bool = False,
    pdl: bool | None = None,
    bounds: bool | None = None,
):
    """Select exactly min(k, n_b) pages per row of scores [B, Hkv, P] (float32).

    lengths [B] int32 gives n_b = ceil(len_b / page_size) valid pages per sequence. With
    page_table [B, >=P] int32 the output holds physical page ids, else logical indices.
    Returns int32 [B, Hkv, k] (and the logical indices too when logical=True). Unordered.
    pdl: programmatic dependent launch (score.use_pdl; default the module switch).
    bounds: one-bit search started from the bounds' shared prefix (default: for row blocks up
    to BOUNDS_MAX_BLOCK; same selection).
    """
    if scores.dim() != 3 or scores.dtype != torch.float32 or scores.stride(-1) != 1:
        raise ValueError("topk_pages: scores must be a float32 [B, Hkv, P] tensor with a "
                         f"contiguous last dim; got {scores.dtype} {tuple(scores.shape)}")
    if lengths.dtype != torch.int32:
        raise ValueError("topk_pages: lengths must be int32")
    if k < 1:
        raise ValueError(f"topk_pages: k must be >= 1, got {k}")
    B, Hkv, P = scores.shape
    if out is None:
        out = torch.empty(B, Hkv, k, dtype=torch.int32, device=scores.device)
    lout = torch.empty_like(out) if logical else out
    P2 = triton.next_power_of_2(max(P, 16))
    if block is None:
        block = min(P2, MAX_BLOCK)
    chunked = block < P2
    if num_warps is None:
        num_warps = WARPS.get(block) or (4 if block <= 2048 else (8 if block <= 4096 else 16))
    cap = MAXNREG.get((block, num_warps)) if scores.is_cuda else None
    rows = scores.view(B * Hkv, P) if scores.is_contiguous() else scores.reshape(B * Hkv, P)
    pt = page_table if page_table is not None else lengths
    pdl = use_pdl(scores, pdl)
    _topk_kernel[(B * Hkv,)](
        rows, lengths, pt, out, lout,
        rows.stride(0), page_table.stride(0) if page_table is not None else 0, out.stride(1),
        Hkv, k, page_size,
        BLOCK=block, CHUNKED=chunked, GATHER=page_table is not None, LOGICAL=logical,
        TWO_BITS=1 if two_bits else (2 if (block <= BOUNDS_MAX_BLOCK if bounds is None
                                           else bounds) else 0),
        PDL_ON=pdl, num_warps=num_warps,
        **({"maxnreg": cap} if cap else {}),
        **({"launch_pdl": True} if pdl else {}),
    )
    return (out, lout) if logical else out
