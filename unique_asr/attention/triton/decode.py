"""Paged decode attention over a list of pages per (sequence, KV head): sparse and dense.

Why one kernel for both: sparse UNIQUE decode attends to the k selected physical pages of each
(sequence, KV head); dense decode is the same with the sequence's page-table row as the list.
The G query heads of a KV head are computed together (padded to 16 rows for tl.dot) so each
page is read once per KV head. The page list is split over programs (split-K) with a
log-sum-exp merge in a second small kernel when one program per (sequence, KV head) would leave
the GPU idle.

Tokens past a sequence's length are masked: only the newest page can be partial, recognised by
its physical id (page_table[b, n_b - 1]). Each list uses its first min(k, n_b) entries.
Reference: reference.sparse_attention / reference.dense_attention.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

from .score import _pdl_enter, f32_dot, use_pdl

LOG2E = 1.4426950408889634


@triton.jit
def _decode_kernel(
    q_ptr, k_ptr, v_ptr, sel_ptr, pt_ptr, len_ptr, o_ptr, po_ptr, plse_ptr,
    stride_qb, stride_qh, stride_kp, stride_kh, stride_kt,
    stride_vp, stride_vh, stride_vt,
    stride_sb, stride_sh, stride_ptb, stride_ob, stride_oh,
    qk_scale, HKV, K_SLOTS, PAGES_PER_SPLIT, NSPLIT,
    G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr, S: tl.constexpr,
    BLOCK_PG: tl.constexpr, SPLIT: tl.constexpr, IEEE: tl.constexpr, PDL_ON: tl.constexpr,
):
    _pdl_enter(PDL_ON)
    pid_bh = tl.program_id(0)
    pid_s = tl.program_id(1)
    b = pid_bh // HKV
    h = pid_bh % HKV
    L = tl.load(len_ptr + b)
    n = (L + S - 1) // S
    nsel = tl.minimum(K_SLOTS, n)
    last_page = tl.load(pt_ptr + b * stride_ptb + n - 1)
    last_len = L - (n - 1) * S
    start = pid_s * PAGES_PER_SPLIT
    end = tl.minimum(start + PAGES_PER_SPLIT, nsel)

    offs_g = tl.arange(0, GP)
    offs_d = tl.arange(0, D)
    gmask = offs_g < G
    q = tl.load(q_ptr + b * stride_qb + (h * G + offs_g)[:, None] * stride_qh + offs_d[None, :],
                mask=gmask[:, None], other=0.0)
    T: tl.constexpr = BLOCK_PG * S
    offs_t = tl.arange(0, T)
    t_pg = offs_t // S
    t_in = offs_t % S
    sel_row = sel_ptr + b * stride_sb + h * stride_sh

    m_i = tl.full((GP,), float("-inf"), tl.float32)
    l_i = tl.zeros((GP,), tl.float32)
    acc = tl.zeros((GP, D), tl.float32)
    for p0 in tl.range(start, end, BLOCK_PG):
        slot = p0 + t_pg
        smask = slot < end
        page = tl.load(sel_row + slot, mask=smask, other=0).to(tl.int64)
        tmask = smask & ((page != last_page) | (t_in < last_len))
        kt = tl.load(k_ptr + page[:, None] * stride_kp + h * stride_kh
                     + t_in[:, None] * stride_kt + offs_d[None, :],
                     mask=tmask[:, None], other=0.0)
        vt = tl.load(v_ptr + page[:, None] * stride_vp + h * stride_vh
                     + t_in[:, None] * stride_vt + offs_d[None, :],
                     mask=tmask[:, None], other=0.0)
        if IEEE:
            qk = tl.dot(q.to(tl.float32), tl.trans(kt.to(tl.float32)), input_precision="ieee")
        else:
            qk = tl.dot(q, tl.trans(kt))
        qk = qk * qk_scale
        qk = tl.where(tmask[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(qk - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        if IEEE:
            pv = tl.dot(p, vt.to(tl.float32), input_precision="ieee")
        else:
            pv = tl.dot(p.to(vt.dtype), vt)
        acc = acc * alpha[:, None] + pv
        m_i = m_new

    heads = h * G + offs_g
    if SPLIT:
        l_safe = tl.where(l_i == 0.0, 1.0, l_i)
        out = acc / l_safe[:, None]
        lse = tl.where(l_i == 0.0, float("-inf"), m_i + tl.log2(l_safe))
        row = (b * HKV * G + heads).to(tl.int64) * NSPLIT + pid_s
        tl.store(po_ptr + row[:, None] * D + offs_d[None, :], out, mask=gmask[:, None])
        tl.store(plse_ptr + row, lse, mask=gmask)
    else:
        out = acc / l_i[:, None]
        tl.store(o_ptr + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :],
                 out.to(o_ptr.dtype.element_ty), mask=gmask[:, None])


@triton.jit
def _merge_kernel(po_ptr, plse_ptr, o_ptr, stride_ob, stride_oh, H, NSPLIT,
                  D: tl.constexpr, NS: tl.constexpr, PDL_ON: tl.constexpr):
    _pdl_enter(PDL_ON)
    row = tl.program_id(0).to(tl.int64)  # b * H + head
    b = row // H
    hd = row % H
    offs_s = tl.arange(0, NS)
    offs_d = tl.arange(0, D)
    smask = offs_s < NSPLIT
    lse = tl.load(plse_ptr + row * NSPLIT + offs_s, mask=smask, other=float("-inf"))
    m = tl.max(lse, 0)
    w = tl.exp2(lse - m)
    w = w / tl.sum(w, 0)
    po = tl.load(po_ptr + (row * NSPLIT + offs_s)[:, None] * D + offs_d[None, :],
                 mask=smask[:, None], other=0.0)
    out = tl.sum(po * w[:, None], 0)
    tl.store(o_ptr + b * stride_ob + hd * stride_oh + offs_d, out.to(o_ptr.dtype.element_ty))


@triton.jit
def _fence_gpu(ON: tl.constexpr):
    if ON:
        tl.inline_asm_elementwise("fence.acq_rel.gpu; // dummy $0", "=r", [], dtype=tl.int32,
                                  is_pure=False, pack=1)


@triton.jit
def _persist_kernel(
    q_ptr, k_ptr, v_ptr, sel_ptr, pt_ptr, len_ptr, o_ptr, po_ptr, plse_ptr, cnt_ptr,
    stride_qb, stride_qh, stride_kp, stride_kh, stride_kt,
    stride_vp, stride_vh, stride_vt,
    stride_sb, stride_sh, stride_ptb, stride_ob, stride_oh,
    qk_scale, HKV, K_SLOTS, UPB, U_TOTAL, NPROG,
    G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr, S: tl.constexpr,
    BLOCK_PG: tl.constexpr, IEEE: tl.constexpr, PDL_ON: tl.constexpr, FENCE: tl.constexpr,
    NUM_STAGES: tl.constexpr, MAXP: tl.constexpr,
):
    """Stream-K layout: the (sequence, KV head) page lists, cut in units of BLOCK_PG slots, are
    laid end to end (U_TOTAL units, UPB per list) and program p takes units
    [p*U_TOTAL//NPROG, (p+1)*U_TOTAL//NPROG): every program gets the same work whatever the
    batch, so a grid of about one wave has no tail. A list covered by one program is written
    directly; a list cut between programs leaves one partial (output, log2-sum-exp) per piece in
    a scratch slot (program, 0 = its first list / 1 = its last) and bumps the list's counter by
    its units; the piece that completes the count merges the pieces and resets the counter."""
    _pdl_enter(PDL_ON)
    pid = tl.program_id(0).to(tl.int64)
    u0 = (pid * U_TOTAL) // NPROG
    u1 = ((pid + 1) * U_TOTAL) // NPROG
    bh_first = u0 // UPB
    bh_last = (u1 - 1) // UPB
    offs_g = tl.arange(0, GP)
    offs_d = tl.arange(0, D)
    gmask = offs_g < G
    T: tl.constexpr = BLOCK_PG * S
    offs_t = tl.arange(0, T)
    t_pg = offs_t // S
    t_in = offs_t % S
    for bh in range(bh_first, bh_last + 1):
        b = bh // HKV
        h = bh % HKV
        L = tl.load(len_ptr + b)
        n = (L + S - 1) // S
        nsel = tl.minimum(K_SLOTS, n)
        last_page = tl.load(pt_ptr + b * stride_ptb + n - 1)
        last_len = L - (n - 1) * S
        lo = tl.maximum(u0, bh * UPB) - bh * UPB
        hi = tl.minimum(u1, bh * UPB + UPB) - bh * UPB
        start = (lo * BLOCK_PG).to(tl.int32)
        end = tl.minimum((hi * BLOCK_PG).to(tl.int32), nsel)
        q = tl.load(q_ptr + b * stride_qb + (h * G + offs_g)[:, None] * stride_qh
                    + offs_d[None, :], mask=gmask[:, None], other=0.0)
        sel_row = sel_ptr + b * stride_sb + h * stride_sh
        m_i = tl.full((GP,), float("-inf"), tl.float32)
        l_i = tl.zeros((GP,), tl.float32)
        acc = tl.zeros((GP, D), tl.float32)
        for p0 in tl.range(start, end, BLOCK_PG, num_stages=NUM_STAGES):
            slot = p0 + t_pg
            smask = slot < end
            page = tl.load(sel_row + slot, mask=smask, other=0).to(tl.int64)
            tmask = smask & ((page != last_page) | (t_in < last_len))
            kt = tl.load(k_ptr + page[:, None] * stride_kp + h * stride_kh
                         + t_in[:, None] * stride_kt + offs_d[None, :],
                         mask=tmask[:, None], other=0.0)
            vt = tl.load(v_ptr + page[:, None] * stride_vp + h * stride_vh
                         + t_in[:, None] * stride_vt + offs_d[None, :],
                         mask=tmask[:, None], other=0.0)
            if IEEE:
                qk = tl.dot(q.to(tl.float32), tl.trans(kt.to(tl.float32)),
                            input_precision="ieee")
            else:
                qk = tl.dot(q, tl.trans(kt))
            qk = qk * qk_scale
            qk = tl.where(tmask[None, :], qk, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp2(m_i - m_safe)
            p = tl.exp2(qk - m_safe[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            if IEEE:
                pv = tl.dot(p, vt.to(tl.float32), input_precision="ieee")
            else:
                pv = tl.dot(p.to(vt.dtype), vt)
            acc = acc * alpha[:, None] + pv
            m_i = m_new
        heads = h * G + offs_g
        o_rows = o_ptr + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :]
        if (lo == 0) & (hi == UPB):  # the whole list in this program
            tl.store(o_rows, (acc / l_i[:, None]).to(o_ptr.dtype.element_ty),
                     mask=gmask[:, None])
        else:
            _store_piece(po_ptr, plse_ptr, acc, m_i, l_i, pid, (bh != bh_first).to(tl.int64),
                         offs_g, offs_d, gmask, G)
            _finish_piece(po_ptr, plse_ptr, cnt_ptr, o_rows, bh, (hi - lo).to(tl.int32), UPB,
                          U_TOTAL, NPROG, offs_g, offs_d, gmask, G, FENCE, MAXP)


@triton.jit
def _flat_kernel(
    q_ptr, k_ptr, v_ptr, sel_ptr, pt_ptr, len_ptr, o_ptr, po_ptr, plse_ptr, cnt_ptr,
    stride_qb, stride_qh, stride_kp, stride_kh, stride_kt,
    stride_vp, stride_vh, stride_vt,
    stride_sb, stride_sh, stride_ptb, stride_ob, stride_oh,
    qk_scale, HKV, K_SLOTS, UPB, U_TOTAL, NPROG,
    G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr, S: tl.constexpr,
    BLOCK_PG: tl.constexpr, IEEE: tl.constexpr, PDL_ON: tl.constexpr, FENCE: tl.constexpr,
    NUM_STAGES: tl.constexpr, MAXP: tl.constexpr,
):
    """The stream-K layout of _persist_kernel as one flat, software-pipelined loop over the
    program's units (no pipeline drain and refill where one list ends and the next begins):
    each unit loads its own list's query and bounds, and the unit that ends a list (or the
    program's range) writes or merges that list and resets the running softmax state."""
    _pdl_enter(PDL_ON)
    pid = tl.program_id(0).to(tl.int64)
    u0 = (pid * U_TOTAL) // NPROG
    u1 = ((pid + 1) * U_TOTAL) // NPROG
    bh_first = u0 // UPB
    offs_g = tl.arange(0, GP)
    offs_d = tl.arange(0, D)
    gmask = offs_g < G
    T: tl.constexpr = BLOCK_PG * S
    offs_t = tl.arange(0, T)
    t_pg = offs_t // S
    t_in = offs_t % S
    m_i = tl.full((GP,), float("-inf"), tl.float32)
    l_i = tl.zeros((GP,), tl.float32)
    acc = tl.zeros((GP, D), tl.float32)
    for u in tl.range(u0.to(tl.int32), u1.to(tl.int32), num_stages=NUM_STAGES):
        bh = u // UPB
        c = u - bh * UPB
        b = bh // HKV
        h = bh - b * HKV
        L = tl.load(len_ptr + b)
        n = (L + S - 1) // S
        nsel = tl.minimum(K_SLOTS, n)
        last_page = tl.load(pt_ptr + b * stride_ptb + n - 1)
        last_len = L - (n - 1) * S
        q = tl.load(q_ptr + b * stride_qb + (h * G + offs_g)[:, None] * stride_qh
                    + offs_d[None, :], mask=gmask[:, None], other=0.0)
        slot = c * BLOCK_PG + t_pg
        smask = slot < nsel
        page = tl.load(sel_ptr + b * stride_sb + h * stride_sh + slot, mask=smask,
                       other=0).to(tl.int64)
        tmask = smask & ((page != last_page) | (t_in < last_len))
        kt = tl.load(k_ptr + page[:, None] * stride_kp + h * stride_kh
                     + t_in[:, None] * stride_kt + offs_d[None, :],
                     mask=tmask[:, None], other=0.0)
        vt = tl.load(v_ptr + page[:, None] * stride_vp + h * stride_vh
                     + t_in[:, None] * stride_vt + offs_d[None, :],
                     mask=tmask[:, None], other=0.0)
        if IEEE:
            qk = tl.dot(q.to(tl.float32), tl.trans(kt.to(tl.float32)), input_precision="ieee")
        else:
            qk = tl.dot(q, tl.trans(kt))
        qk = qk * qk_scale
        qk = tl.where(tmask[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(qk - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        if IEEE:
            pv = tl.dot(p, vt.to(tl.float32), input_precision="ieee")
        else:
            pv = tl.dot(p.to(vt.dtype), vt)
        acc = acc * alpha[:, None] + pv
        m_i = m_new
        if (c == UPB - 1) | (u == u1 - 1):  # this unit ends the list's piece
            lo = tl.maximum(u0, bh * UPB) - bh * UPB
            heads = h * G + offs_g
            o_rows = o_ptr + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :]
            if (lo == 0) & (c == UPB - 1):  # the whole list in this program
                tl.store(o_rows, (acc / l_i[:, None]).to(o_ptr.dtype.element_ty),
                         mask=gmask[:, None])
            else:  # a cut list: its piece now, the counter and merge after the loop
                _store_piece(po_ptr, plse_ptr, acc, m_i, l_i, pid, (bh != bh_first).to(tl.int64),
                             offs_g, offs_d, gmask, G)
            m_i = tl.full((GP,), float("-inf"), tl.float32)
            l_i = tl.zeros((GP,), tl.float32)
            acc = tl.zeros((GP, D), tl.float32)
    # the cut pieces: the first list if it started before u0 or runs past u1, the last list if
    # it is another one and runs past u1
    bh_last = (u1 - 1) // UPB
    if (u0 > bh_first * UPB) | (u1 < bh_first * UPB + UPB):
        b = bh_first // HKV
        heads = (bh_first - b * HKV) * G + offs_g
        _finish_piece(po_ptr, plse_ptr, cnt_ptr,
                      o_ptr + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :],
                      bh_first, (tl.minimum(u1, bh_first * UPB + UPB) - u0).to(tl.int32), UPB,
                      U_TOTAL, NPROG, offs_g, offs_d, gmask, G, FENCE, MAXP)
    if (bh_last != bh_first) & (u1 < bh_last * UPB + UPB):
        b = bh_last // HKV
        heads = (bh_last - b * HKV) * G + offs_g
        _finish_piece(po_ptr, plse_ptr, cnt_ptr,
                      o_ptr + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :],
                      bh_last, (u1 - bh_last * UPB).to(tl.int32), UPB, U_TOTAL, NPROG, offs_g,
                      offs_d, gmask, G, FENCE, MAXP)


@triton.jit
def _store_piece(po_ptr, plse_ptr, acc, m_i, l_i, pid, slot, offs_g, offs_d, gmask,
                 G: tl.constexpr):
    """Store one piece of a cut list (normalised output, log2-sum-exp) in the program's scratch
    slot (0: its first list, 1: its last)."""
    D: tl.constexpr = offs_d.shape[0]
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    lse = tl.where(l_i == 0.0, float("-inf"), m_i + tl.log2(l_safe))
    part = (pid * 2 + slot) * G + offs_g
    tl.store(po_ptr + part[:, None] * D + offs_d[None, :], acc / l_safe[:, None],
             mask=gmask[:, None])
    tl.store(plse_ptr + part, lse, mask=gmask)


@triton.jit
def _finish_piece(po_ptr, plse_ptr, cnt_ptr, o_rows, bh, units, UPB, U_TOTAL, NPROG, offs_g,
                  offs_d, gmask, G: tl.constexpr, FENCE: tl.constexpr, MAXP: tl.constexpr):
    """After a piece is stored: add its units to the list's counter; the piece that completes
    the count merges the list's pieces (at most MAXP, from consecutive programs) into o_rows
    and resets the counter to 0. (Atomics and fences inside a loop stop Triton's software
    pipelining, so the flat kernel calls this after its loop.)"""
    D: tl.constexpr = offs_d.shape[0]
    GP: tl.constexpr = offs_g.shape[0]
    _fence_gpu(FENCE)
    tl.debug_barrier()
    done = tl.atomic_add(cnt_ptr + bh, units, sem="acq_rel", scope="gpu")
    if done + units == UPB:  # last piece of this list: merge
        _fence_gpu(FENCE)
        tl.store(cnt_ptr + bh, 0)
        p_first = ((bh * UPB + 1) * NPROG - 1) // U_TOTAL
        p_last = ((bh * UPB + UPB) * NPROG - 1) // U_TOTAL
        mm = tl.full((GP,), float("-inf"), tl.float32)
        ww = tl.zeros((GP,), tl.float32)
        oo = tl.zeros((GP, D), tl.float32)
        for i in tl.static_range(MAXP):
            pp = p_first + i
            first = ((pp * U_TOTAL) // NPROG) // UPB
            prow = (pp * 2 + (bh != first).to(tl.int64)) * G + offs_g
            pm = gmask & (pp <= p_last)
            lp = tl.load(plse_ptr + prow, mask=pm, other=float("-inf"), cache_modifier=".cg")
            op = tl.load(po_ptr + prow[:, None] * D + offs_d[None, :], mask=pm[:, None],
                         other=0.0, cache_modifier=".cg")
            m2 = tl.maximum(mm, lp)
            m2s = tl.where(m2 == float("-inf"), 0.0, m2)
            a = tl.exp2(mm - m2s)
            cc = tl.exp2(lp - m2s)
            ww = ww * a + cc
            oo = oo * a[:, None] + op * cc[:, None]
            mm = m2
        tl.store(o_rows, (oo / ww[:, None]).to(o_rows.dtype.element_ty), mask=gmask[:, None])


def paged_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    pages: torch.Tensor,
    page_table: torch.Tensor,
    lengths: torch.Tensor,
    scale: float | None = None,
    num_splits: int | None = None,
    block_pg: int = 4,
    num_warps: int = 4,
    num_stages: int = 4,
    out: torch.Tensor | None = None,
    pdl: bool | None = None,
    maxnreg: int | None = None,
    layout: str | None = None,
    progs_per_sm: int | None = None,
    counters_ws: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of q [B, H, D] over the pages listed per (sequence, KV head).

    k_cache, v_cache: [N, Hkv, S, D] (one layer of PagedKVCache.k / .v). pages: [B, Hkv, k]
    int32 physical ids (sparse; from topk_pages) or [B, 1, P] (dense: pass the page table
    unsqueezed at dim 1; broadcast over KV heads). page_table [B, >=n_b] int32 and lengths [B]
    int32 locate each sequence's newest (partial) page. Returns [B, H, D] in q's dtype.
    num_splits: programs per (sequence, KV head) along the page list (default: enough to fill
    the GPU with at most ~256 and at least 16 pages each). Defaults follow the H200 sweep.
    pdl: programmatic dependent launch (score.use_pdl; default the module switch).
    maxnreg: register cap per thread (CUDA; more programs per SM: at batch 80 the default tile
    needs ~211 registers, 2 programs per SM; a cap of 168 gives 3 without spills, sm_90 build).
    layout: "grid" (programs = lists x num_splits, merge kernel when split), "persistent"
    (stream-K: progs_per_sm x SMs programs share the page lists evenly, cut lists merged in
    the kernel through per-list counters; num_splits unused) or "flat" (the same work split
    run as one flat pipelined loop per program). Default: module LAYOUT for
    sparse lists on CUDA, "grid" otherwise. counters_ws: >= B * Hkv zeroed int32 counters
    (default the device workspace, counters(); left zeroed; concurrent launches on several
    streams must pass disjoint ones). Without a workspace during CUDA-graph capture (none
    made yet outside it), the grid layout is used.
    """
    if q.dim() != 3 or k_cache.dim() != 4 or pages.dim() != 3:
        raise ValueError("paged_decode: expected q [B,H,D], k_cache [N,Hkv,S,D], "
                         f"pages [B,Hkv|1,k]; got {tuple(q.shape)}, {tuple(k_cache.shape)}, "
                         f"{tuple(pages.shape)}")
    B, H, D = q.shape
    _N, Hkv, S, Dk = k_cache.shape
    if Dk != D or H % Hkv:
        raise ValueError(f"paged_decode: head dim {D} vs cache {Dk}, or H={H} not a multiple "
                         f"of Hkv={Hkv}")
    if pages.dtype != torch.int32 or page_table.dtype != torch.int32:
        raise ValueError("paged_decode: pages and page_table must be int32")
    if S & (S - 1) or D & (D - 1) or D < 16:
        raise ValueError(f"paged_decode: page size {S} and head dim {D} must be powers of two "
                         "(head dim >= 16)")
    if q.stride(-1) != 1 or k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1:
        raise ValueError("paged_decode: q, k_cache and v_cache need a contiguous last dim")
    block_pg = max(block_pg, triton.cdiv(16, S))
    G = H // Hkv
    K_SLOTS = pages.shape[2]
    scale = D**-0.5 if scale is None else scale
    if layout is None:
        layout = LAYOUT if (q.is_cuda and pages.shape[1] > 1) else "grid"
    if layout not in ("grid", "persistent", "flat"):
        raise ValueError("paged_decode: layout must be 'grid', 'persistent' or 'flat', got "
                         f"{layout!r}")
    if layout != "grid":
        cnt = counters_ws if counters_ws is not None else counters(q.device, B * Hkv)
        if cnt is not None:
            if cnt.dtype != torch.int32 or cnt.numel() < B * Hkv:
                raise ValueError("paged_decode: counters_ws must be int32 with >= B * Hkv "
                                 "entries")
            return _persistent(q, k_cache, v_cache, pages, page_table, lengths, scale,
                               block_pg, num_warps, num_stages, out, pdl, maxnreg,
                               progs_per_sm, cnt, layout == "flat")
    if num_splits is None:  # ~4 programs per SM and at most ~256 pages per program
        target = 4 * 132 if q.is_cuda else 2
        want = max(triton.cdiv(target, B * Hkv), triton.cdiv(K_SLOTS, 256))
        num_splits = max(1, min(triton.cdiv(K_SLOTS, 16), want))
    pps = triton.cdiv(triton.cdiv(K_SLOTS, num_splits), block_pg) * block_pg
    num_splits = triton.cdiv(K_SLOTS, pps)
    if out is None:
        out = torch.empty(B, H, D, dtype=q.dtype, device=q.device)
    split = num_splits > 1
    if split:
        po = torch.empty(B * H * num_splits, D, dtype=torch.float32, device=q.device)
        plse = torch.empty(B * H * num_splits, dtype=torch.float32, device=q.device)
    else:
        po = plse = out
    stride_sh = pages.stride(1) if pages.shape[1] > 1 else 0
    pdl = use_pdl(q, pdl)
    launch = {"launch_pdl": True} if pdl else {}
    if maxnreg and q.is_cuda:
        launch["maxnreg"] = int(maxnreg)
    _decode_kernel[(B * Hkv, num_splits)](
        q, k_cache, v_cache, pages, page_table, lengths, out, po, plse,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        pages.stride(0), stride_sh, page_table.stride(0), out.stride(0), out.stride(1),
        scale * LOG2E, Hkv, K_SLOTS, pps, num_splits,
        G=G, GP=max(16, triton.next_power_of_2(G)), D=D, S=S, BLOCK_PG=block_pg, SPLIT=split,
        IEEE=f32_dot(k_cache.dtype), PDL_ON=pdl, num_warps=num_warps, num_stages=num_stages,
        **launch,
    )
    launch.pop("maxnreg", None)
    if split:
        _merge_kernel[(B * H,)](po, plse, out, out.stride(0), out.stride(1), H, num_splits,
                                D=D, NS=triton.next_power_of_2(num_splits), PDL_ON=pdl,
                                num_warps=1, **launch)
    return out


# Library defaults for sparse lists on CUDA (H200 sweep, bench/NOTES.md run 7).
LAYOUT = "grid"
PROGS_PER_SM = 2  # resident programs per SM at the default tile (~211 registers, sm_90)
MIN_UNITS = 4  # fewest page blocks a persistent program takes (short lists, small batches)

_COUNTERS: dict = {}


def counters(device: torch.device, rows: int) -> torch.Tensor | None:
    """The device's zeroed int32 list counters for the persistent layout (a workspace of at
    least `rows`; each launch leaves them zeroed). None during CUDA-graph capture when none
    big enough was made before (allocation there would not be zeroed at replay)."""
    key = str(device)
    buf = _COUNTERS.get(key)
    if buf is None or buf.numel() < rows:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return None
        buf = torch.zeros(max(rows, 1024), dtype=torch.int32, device=device)
        _COUNTERS[key] = buf
    return buf


@functools.cache
def _num_sms(index: int | None) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _persistent(q, k_cache, v_cache, pages, page_table, lengths, scale, block_pg, num_warps,
                num_stages, out, pdl, maxnreg, progs_per_sm, cnt, flat):
    """paged_decode with the stream-K layout (_persist_kernel, or _flat_kernel when flat)."""
    B, H, D = q.shape
    Hkv, S = k_cache.shape[1], k_cache.shape[2]
    G = H // Hkv
    K_SLOTS = pages.shape[2]
    upb = triton.cdiv(K_SLOTS, block_pg)
    total = B * Hkv * upb
    if q.is_cuda:
        want = round((progs_per_sm or PROGS_PER_SM) * _num_sms(q.device.index))
    else:  # interpreter: progs_per_sm is the program count (a few, so lists are cut)
        want = round(progs_per_sm or 3)
    nprog = max(1, min(want, triton.cdiv(total, MIN_UNITS) if q.is_cuda else total))
    if out is None:
        out = torch.empty(B, H, D, dtype=q.dtype, device=q.device)
    po = torch.empty(nprog * 2 * G, D, dtype=torch.float32, device=q.device)
    plse = torch.empty(nprog * 2 * G, dtype=torch.float32, device=q.device)
    stride_sh = pages.stride(1) if pages.shape[1] > 1 else 0
    pdl = use_pdl(q, pdl)
    launch = {"launch_pdl": True} if pdl else {}
    if maxnreg and q.is_cuda:
        launch["maxnreg"] = int(maxnreg)
    fence = q.is_cuda and os.environ.get("TRITON_INTERPRET") != "1"
    kernel = _flat_kernel if flat else _persist_kernel
    kernel[(nprog,)](
        q, k_cache, v_cache, pages, page_table, lengths, out, po, plse, cnt,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        pages.stride(0), stride_sh, page_table.stride(0), out.stride(0), out.stride(1),
        scale * LOG2E, Hkv, K_SLOTS, upb, total, nprog,
        G=G, GP=max(16, triton.next_power_of_2(G)), D=D, S=S, BLOCK_PG=block_pg,
        IEEE=f32_dot(k_cache.dtype), PDL_ON=pdl, FENCE=fence, NUM_STAGES=num_stages,
        MAXP=triton.cdiv(upb - 1, total // nprog) + 1, num_warps=num_warps, **launch,
    )
    return out
