"""Fused page-score kernels: UNIQUE (q.mean + lam*||q||*std, GQA max) and Quest.

Why fused: the score pass reads every page's statistics once, which dominates the selector's
bytes; doing the dot, the rank-one offset, the GQA max and the forced pages in one launch writes
only one float per page and KV head. The means tile [BLOCK_P x D] is multiplied by the query
group padded to 16 columns with tl.dot (near the memory bandwidth; elementwise products were
much slower: bench/NOTES.md).

Forced pages: the newest page of each sequence gets +inf and the first `sink_pages` pages get
the largest finite float, so the top-k kernel keeps them without a special case (same rule as
reference.select_pages). Scores are written for pages [0, n_pages_b) only; top-k reads no more.
References: reference.unique_page_scores, reference.meanonly_page_scores (lam = 0),
reference.quest_page_scores.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

FLT_MAX = tl.constexpr(3.4028234663852886e38)


def f32_dot(dtype: torch.dtype) -> bool:
    """Do tl.dot in exact float32: for float32 data (no tf32), and for bf16 under the Triton
    interpreter, whose bf16 tl.dot returns garbage (triton 3.6, seen here)."""
    interp = os.environ.get("TRITON_INTERPRET") == "1"
    return dtype == torch.float32 or (interp and dtype == torch.bfloat16)


# Programmatic dependent launch (Hopper+): the decode step's kernels are launched so that the next
# one is scheduled while the previous one drains (it waits in griddepcontrol.wait before reading
# anything), hiding the launch and ramp between score, top-k and attention. Off under the
# interpreter and before sm_90; set PDL = False to launch plainly (the bench times both).
PDL = True


def use_pdl(t: torch.Tensor, pdl: bool | None = None) -> bool:
    """Whether kernels on t's device use programmatic dependent launch: asked for (pdl, default
    the module switch PDL) and possible (CUDA, sm_90 or newer)."""
    pdl = PDL if pdl is None else pdl
    return bool(pdl and t.is_cuda and torch.cuda.get_device_capability(t.device)[0] >= 9)


@triton.jit
def _pdl_enter(ON: tl.constexpr):
    """Wait for the previous kernel (all its writes visible), then let the next one launch.
    Called first in every step kernel, before any load, so no data race is possible."""
    if ON:
        gdc_wait()
        gdc_launch_dependents()


@triton.jit
def _force(best, offs_p, n, sink_pages, FORCE: tl.constexpr):
    if FORCE:
        best = tl.where(offs_p < sink_pages, FLT_MAX, best)
        best = tl.where(offs_p == n - 1, float("inf"), best)
    return best


@triton.jit
def _unique_score_rows(
    q_ptr, mean_ptr, scale_ptr, center_ptr, std_ptr, pt_ptr, len_ptr, out_ptr, pid_bh, pid_p,
    stride_qb, stride_qh, stride_mp, stride_mh, stride_sp, stride_sh, stride_ptb,
    stride_ob, stride_oh, stride_cb, stride_ch,
    lam, sink_pages, HKV, PAGE_SIZE, PAGES_PER_PROG,
    G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr, BLOCK_P: tl.constexpr,
    FORCE: tl.constexpr, IEEE: tl.constexpr, NUM_STAGES: tl.constexpr, SCALED: tl.constexpr,
):
    """Scores of pages [pid_p * PAGES_PER_PROG, +PAGES_PER_PROG) of row (b, h) = pid_bh.
    SCALED: the means are one-byte (float8 e4m3 or int8) offsets from the row's centre
    (center_ptr [B, Hkv, D] float32) with one float32 scale per (page, head) at scale_ptr
    (same strides as std); they are widened to q's dtype for the dot, the dot is scaled and
    q.centre added."""
    b = pid_bh // HKV
    h = pid_bh % HKV
    n = (tl.load(len_ptr + b) + PAGE_SIZE - 1) // PAGE_SIZE
    start = pid_p * PAGES_PER_PROG
    end = tl.minimum(start + PAGES_PER_PROG, n)
    if start < n:
        offs_g = tl.arange(0, GP)
        offs_d = tl.arange(0, D)
        gmask = offs_g < G
        q = tl.load(q_ptr + b * stride_qb + (h * G + offs_g)[:, None] * stride_qh
                    + offs_d[None, :], mask=gmask[:, None], other=0.0)
        qf = q.to(tl.float32)
        qn = tl.sqrt(tl.sum(qf * qf, 1))  # [GP]
        if SCALED:
            qt = tl.trans(q)
            c = tl.load(center_ptr + b * stride_cb + h * stride_ch + offs_d)
            qc = tl.sum(qf * c[None, :], 1)  # [GP]
        else:
            qt = tl.trans(q.to(mean_ptr.dtype.element_ty))
        # several page blocks per program, software-pipelined, so loads stay in flight
        for p0 in tl.range(start, end, BLOCK_P, num_stages=NUM_STAGES):
            offs_p = p0 + tl.arange(0, BLOCK_P)
            pmask = offs_p < end
            page = tl.load(pt_ptr + b * stride_ptb + offs_p, mask=pmask, other=0).to(tl.int64)
            m = tl.load(mean_ptr + page[:, None] * stride_mp + h * stride_mh + offs_d[None, :],
                        mask=pmask[:, None], other=0.0)
            s = tl.load(std_ptr + page * stride_sp + h * stride_sh, mask=pmask, other=0.0)
            if IEEE:
                dot = tl.dot(m.to(tl.float32), tl.trans(qf), input_precision="ieee")
            elif SCALED:
                dot = tl.dot(m.to(q_ptr.dtype.element_ty), qt)
            else:
                dot = tl.dot(m, qt)
            if SCALED:
                dot = dot * tl.load(scale_ptr + page * stride_sp + h * stride_sh, mask=pmask,
                                    other=0.0)[:, None] + qc[None, :]
            sc = dot + lam * s[:, None] * qn[None, :]
            sc = tl.where(gmask[None, :], sc, float("-inf"))
            best = tl.max(sc, 1)
            best = _force(best, offs_p, n, sink_pages, FORCE)
            tl.store(out_ptr + b * stride_ob + h * stride_oh + offs_p, best, mask=pmask)


@triton.jit
def _unique_score_kernel(
    q_ptr, mean_ptr, scale_ptr, center_ptr, std_ptr, pt_ptr, len_ptr, out_ptr,
    stride_qb, stride_qh, stride_mp, stride_mh, stride_sp, stride_sh, stride_ptb,
    stride_ob, stride_oh, stride_cb, stride_ch,
    lam, sink_pages, HKV, PAGE_SIZE, PAGES_PER_PROG,
    G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr, BLOCK_P: tl.constexpr,
    FORCE: tl.constexpr, IEEE: tl.constexpr, NUM_STAGES: tl.constexpr, PDL_ON: tl.constexpr,
    SCALED: tl.constexpr,
):
    _pdl_enter(PDL_ON)
    _unique_score_rows(
        q_ptr, mean_ptr, scale_ptr, center_ptr, std_ptr, pt_ptr, len_ptr, out_ptr,
        tl.program_id(0), tl.program_id(1), stride_qb, stride_qh, stride_mp, stride_mh,
        stride_sp, stride_sh, stride_ptb, stride_ob, stride_oh, stride_cb, stride_ch,
        lam, sink_pages, HKV, PAGE_SIZE, PAGES_PER_PROG,
        G, GP, D, BLOCK_P, FORCE, IEEE, NUM_STAGES, SCALED)


@triton.jit
def _quest_score_kernel(
    q_ptr, kmin_ptr, kmax_ptr, pt_ptr, len_ptr, out_ptr,
    stride_qb, stride_qh, stride_mp, stride_mh, stride_ptb, stride_ob, stride_oh,
    sink_pages, HKV, PAGE_SIZE,
    G: tl.constexpr, D: tl.constexpr, BLOCK_P: tl.constexpr, FORCE: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_p = tl.program_id(1)
    b = pid_bh // HKV
    h = pid_bh % HKV
    n = (tl.load(len_ptr + b) + PAGE_SIZE - 1) // PAGE_SIZE
    p0 = pid_p * BLOCK_P
    if p0 < n:
        offs_d = tl.arange(0, D)
        offs_p = p0 + tl.arange(0, BLOCK_P)
        pmask = offs_p < n
        page = tl.load(pt_ptr + b * stride_ptb + offs_p, mask=pmask, other=0).to(tl.int64)
        ptrs = page[:, None] * stride_mp + h * stride_mh + offs_d[None, :]
        lo = tl.load(kmin_ptr + ptrs, mask=pmask[:, None], other=0.0).to(tl.float32)
        hi = tl.load(kmax_ptr + ptrs, mask=pmask[:, None], other=0.0).to(tl.float32)
        best = tl.full((BLOCK_P,), float("-inf"), tl.float32)
        for g in tl.static_range(G):
            qg = tl.load(q_ptr + b * stride_qb + (h * G + g) * stride_qh + offs_d).to(tl.float32)
            val = tl.sum(tl.maximum(qg[None, :] * lo, qg[None, :] * hi), 1)
            best = tl.maximum(best, val)
        best = _force(best, offs_p, n, sink_pages, FORCE)
        tl.store(out_ptr + b * stride_ob + h * stride_oh + offs_p, best, mask=pmask)


def _check_common(q, page_table, lengths, max_pages):
    if q.dim() != 3:
        raise ValueError(f"score: q must be [B, H, D], got {tuple(q.shape)}")
    if page_table.dtype != torch.int32 or lengths.dtype != torch.int32:
        raise ValueError("score: page_table and lengths must be int32 (PagedKVCache.batch())")
    if q.stride(-1) != 1:
        raise ValueError("score: q's last dimension must be contiguous")


def unique_scores(
    q: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    page_table: torch.Tensor,
    lengths: torch.Tensor,
    page_size: int,
    lam: float = 0.5,
    sink_pages: int = 0,
    force: bool = True,
    max_pages: int | None = None,
    out: torch.Tensor | None = None,
    block_p: int = 64,
    num_warps: int = 4,
    num_stages: int = 2,
    pages_per_prog: int | None = 128,
    pdl: bool | None = None,
    mean_scale: torch.Tensor | None = None,
    mean_center: torch.Tensor | None = None,
) -> torch.Tensor:
    """UNIQUE page scores over a paged cache's statistics.

    q [B, H, D]; mean [N, Hkv, D] (one layer of PagedKVCache.mean; for stats_dtype="fp8"
    or "int8" one-byte offsets with their float32 scales mean_scale [N, Hkv], laid out as std, and
    each row's centre mean_center [B, Hkv, D] float32, PagedKVCache.row_centers);
    std [N, Hkv] float32; page_table [B, >=P] int32; lengths [B] int32. Returns float32
    scores [B, Hkv, P] with P = max_pages (default page_table.shape[1]); entries past a
    sequence's pages are not written.
    lam = 0 gives the mean-only baseline. Each program scores `pages_per_prog` pages of one
    (sequence, KV head) row in blocks of block_p (None: about 8 programs per SM). Defaults are
    the fastest of the block sweep in bench/NOTES.md (batch 80 and 16).
    pdl: programmatic dependent launch (default use_pdl(q)).
    """
    _check_common(q, page_table, lengths, max_pages)
    B, H, D = q.shape
    Hkv = mean.shape[1]
    G = H // Hkv
    P = max_pages or page_table.shape[1]
    if mean.stride(-1) != 1:
        raise ValueError("unique_scores: mean's last dimension must be contiguous")
    scaled = mean.dtype in (torch.float8_e4m3fn, torch.int8)
    if scaled != (mean_scale is not None) or scaled != (mean_center is not None):
        raise ValueError("unique_scores: one-byte means need their mean_scale and mean_center "
                         "(and only they)")
    if scaled and mean_scale.stride() != std.stride():
        raise ValueError("unique_scores: mean_scale must have std's layout [N, Hkv]")
    if scaled and (tuple(mean_center.shape) != (B, Hkv, D) or mean_center.stride(-1) != 1
                   or mean_center.dtype != torch.float32):
        raise ValueError(f"unique_scores: mean_center must be float32 [{B}, {Hkv}, {D}] with a "
                         "contiguous last dimension")
    center = mean_center if scaled else std
    if out is None:
        out = torch.empty(B, Hkv, P, dtype=torch.float32, device=q.device)
    if pages_per_prog is None:
        target = 8 * 132 if q.is_cuda else 4
        chunks = max(1, min(triton.cdiv(P, block_p), triton.cdiv(target, B * Hkv)))
        pages_per_prog = triton.cdiv(triton.cdiv(P, chunks), block_p) * block_p
    pages_per_prog = triton.cdiv(pages_per_prog, block_p) * block_p
    pdl = use_pdl(q, pdl)
    grid = (B * Hkv, triton.cdiv(P, pages_per_prog))
    _unique_score_kernel[grid](
        q, mean, mean_scale if scaled else std, center, std, page_table, lengths, out,
        q.stride(0), q.stride(1), mean.stride(0), mean.stride(1), std.stride(0), std.stride(1),
        page_table.stride(0), out.stride(0), out.stride(1), center.stride(0), center.stride(1),
        float(lam), int(sink_pages), Hkv, page_size, pages_per_prog,
        G=G, GP=max(16, triton.next_power_of_2(G)), D=D, BLOCK_P=block_p, FORCE=force,
        IEEE=f32_dot(q.dtype if scaled else mean.dtype), NUM_STAGES=num_stages, PDL_ON=pdl,
        SCALED=scaled, num_warps=num_warps,
        **({"launch_pdl": True} if pdl else {}),
    )
    return out


def quest_scores(
    q: torch.Tensor,
    kmin: torch.Tensor,
    kmax: torch.Tensor,
    page_table: torch.Tensor,
    lengths: torch.Tensor,
    page_size: int,
    sink_pages: int = 0,
    force: bool = True,
    max_pages: int | None = None,
    out: torch.Tensor | None = None,
    block_p: int = 32,
    num_warps: int = 4,
) -> torch.Tensor:
    """Quest page scores (sum_d max(q_d min_d, q_d max_d), GQA max) over a paged cache.
    kmin, kmax: [N, Hkv, D] (one layer of PagedKVCache.kmin/kmax). Returns [B, Hkv, P]."""
    _check_common(q, page_table, lengths, max_pages)
    B, H, D = q.shape
    Hkv = kmin.shape[1]
    P = max_pages or page_table.shape[1]
    if out is None:
        out = torch.empty(B, Hkv, P, dtype=torch.float32, device=q.device)
    grid = (B * Hkv, triton.cdiv(P, block_p))
    _quest_score_kernel[grid](
        q, kmin, kmax, page_table, lengths, out,
        q.stride(0), q.stride(1), kmin.stride(0), kmin.stride(1), page_table.stride(0),
        out.stride(0), out.stride(1), int(sink_pages), Hkv, page_size,
        G=H // Hkv, D=D, BLOCK_P=block_p, FORCE=force, num_warps=num_warps,
    )
    return out
