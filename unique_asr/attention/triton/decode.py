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
) -> torch.Tensor:
    """Attention of q [B, H, D] over the pages listed per (sequence, KV head).

    k_cache, v_cache: [N, Hkv, S, D] (one layer of PagedKVCache.k / .v). pages: [B, Hkv, k]
    int32 physical ids (sparse; from topk_pages) or [B, 1, P] (dense: pass the page table
    unsqueezed at dim 1; broadcast over KV heads). page_table [B, >=n_b] int32 and lengths [B]
    int32 locate each sequence's newest (partial) page. Returns [B, H, D] in q's dtype.
    num_splits: programs per (sequence, KV head) along the page list (default: enough to fill
    the GPU with at most ~256 and at least 16 pages each). Defaults: the sweep in bench/NOTES.md.
    pdl: programmatic dependent launch (score.use_pdl; default the module switch).
    maxnreg: register cap per thread (CUDA; more programs per SM: at batch 80 the default tile
    needs ~211 registers, 2 programs per SM; a cap of 168 gives 3 without spills, sm_90 build).
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
