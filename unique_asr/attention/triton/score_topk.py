"""UNIQUE page scores and top-k selection in one launch (score programs elect a row's selector).

Why: top-k is latency-bound (a chain of row reductions) and, as its own kernel, runs after the
bandwidth-bound score pass with the memory idle. Here the score programs of a (sequence, KV
head) row are consecutive in the grid, so rows finish one after another; each program bumps the
row's counter after writing its scores, and the program that finishes a row last runs the row's
radix select (topk._select_row, the same code as topk_pages) while other rows are still being
scored. One launch less, and top-k overlaps the score pass.

Ordering: every thread fences (gpu scope) after its score stores, the counter add is acq_rel,
and the selector reads the scores through L2 (.cg); the last program resets the counter to 0,
so the counters (a per-stream workspace) are zero between launches. Same results as
unique_scores + topk_pages (bitwise; tests/attention/test_sparse_step.py).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .score import _pdl_enter, _unique_score_rows, f32_dot, use_pdl
from .topk import MAX_BLOCK, _select_row


@triton.jit
def _fence_gpu(ON: tl.constexpr):
    if ON:
        tl.inline_asm_elementwise("fence.acq_rel.gpu; // dummy $0", "=r", [], dtype=tl.int32,
                                  is_pure=False, pack=1)


@triton.jit
def _score_topk_kernel(
    q_ptr, mean_ptr, std_ptr, pt_ptr, len_ptr, sc_ptr, cnt_ptr, sel_ptr,
    stride_qb, stride_qh, stride_mp, stride_mh, stride_sp, stride_sh, stride_ptb,
    stride_ob, stride_oh, stride_sel,
    lam, sink_pages, HKV, PAGE_SIZE, PAGES_PER_PROG, NPROG, K,
    G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr, BLOCK_P: tl.constexpr,
    FORCE: tl.constexpr, IEEE: tl.constexpr, NUM_STAGES: tl.constexpr, PDL_ON: tl.constexpr,
    BLOCK_K: tl.constexpr, FENCE: tl.constexpr,
):
    _pdl_enter(PDL_ON)
    pid = tl.program_id(0)
    row = pid // NPROG
    _unique_score_rows(
        q_ptr, mean_ptr, std_ptr, pt_ptr, len_ptr, sc_ptr, row, pid % NPROG,
        stride_qb, stride_qh, stride_mp, stride_mh, stride_sp, stride_sh, stride_ptb,
        stride_ob, stride_oh, lam, sink_pages, HKV, PAGE_SIZE, PAGES_PER_PROG,
        G, GP, D, BLOCK_P, FORCE, IEEE, NUM_STAGES)
    _fence_gpu(FENCE)
    tl.debug_barrier()
    done = tl.atomic_add(cnt_ptr + row, 1, sem="acq_rel", scope="gpu")
    if done == NPROG - 1:  # this program finished the row: select its pages
        _fence_gpu(FENCE)
        tl.store(cnt_ptr + row, 0)
        b = row // HKV
        h = row % HKV
        n = (tl.load(len_ptr + b) + PAGE_SIZE - 1) // PAGE_SIZE
        o_row = sel_ptr + row.to(tl.int64) * stride_sel
        _select_row(sc_ptr + b * stride_ob + h * stride_oh, o_row, o_row,
                    pt_ptr + b * stride_ptb, n, K, BLOCK_K, True, False, False, True)


_COUNTERS: dict = {}


def counters(device: torch.device, rows: int) -> torch.Tensor:
    """The device's zeroed int32 row counters (a workspace, at least `rows` long). Launches on
    one stream are ordered; launches that may run concurrently (api.sparse_step's batch split
    over streams) must pass disjoint slices (counters=...)."""
    key = str(device)
    buf = _COUNTERS.get(key)
    if buf is None or buf.numel() < rows:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            raise RuntimeError("unique_scores_topk: run one step outside CUDA-graph capture "
                               "first (its row counters are allocated and zeroed then)")
        buf = torch.zeros(max(rows, 1024), dtype=torch.int32, device=device)
        _COUNTERS[key] = buf
    return buf


def fits(max_pages: int) -> bool:
    """Whether a row of max_pages scores fits the fused selector (one register block)."""
    return triton.next_power_of_2(max(max_pages, 16)) <= MAX_BLOCK


def unique_scores_topk(
    q: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    page_table: torch.Tensor,
    lengths: torch.Tensor,
    page_size: int,
    k: int,
    lam: float = 0.5,
    sink_pages: int = 0,
    max_pages: int | None = None,
    scores: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    block_p: int = 64,
    num_warps: int = 4,
    num_stages: int = 2,
    pages_per_prog: int = 128,
    pdl: bool | None = None,
    counters_ws: torch.Tensor | None = None,
    maxnreg: int | None = 128,
):
    """unique_scores then topk_pages (physical ids) in one launch; same arguments and results.
    Returns (scores [B, Hkv, P] float32, pages [B, Hkv, k] int32). Rows of more than
    topk.MAX_BLOCK pages are refused (use the two kernels). counters_ws: B * Hkv zeroed int32
    row counters (default the device workspace, counters()); left zeroed. maxnreg: register
    cap (the selector alone wants ~167 at 2K-4K pages, which would cut the score phase to 3
    programs per SM; 128 compiles without spills for sm_90, 4 per SM like unique_scores)."""
    if q.dim() != 3 or page_table.dtype != torch.int32 or lengths.dtype != torch.int32:
        raise ValueError("unique_scores_topk: q [B, H, D], int32 page_table and lengths")
    if q.stride(-1) != 1 or mean.stride(-1) != 1:
        raise ValueError("unique_scores_topk: q and mean need a contiguous last dim")
    if k < 1:
        raise ValueError(f"unique_scores_topk: k must be >= 1, got {k}")
    B, H, D = q.shape
    Hkv = mean.shape[1]
    P = max_pages or page_table.shape[1]
    if not fits(P):
        raise ValueError(f"unique_scores_topk: {P} pages per row exceed {MAX_BLOCK}; use "
                         "unique_scores + topk_pages")
    if scores is None:
        scores = torch.empty(B, Hkv, P, dtype=torch.float32, device=q.device)
    if out is None:
        out = torch.empty(B, Hkv, k, dtype=torch.int32, device=q.device)
    if not (out.is_contiguous() and scores.stride(-1) == 1):
        raise ValueError("unique_scores_topk: out must be contiguous and scores have a "
                         "contiguous last dim")
    ppp = triton.cdiv(pages_per_prog, block_p) * block_p
    nprog = triton.cdiv(P, ppp)
    cnt = counters(q.device, B * Hkv) if counters_ws is None else counters_ws
    if cnt.dtype != torch.int32 or cnt.numel() < B * Hkv:
        raise ValueError("unique_scores_topk: counters_ws must be int32 with >= B * Hkv entries")
    pdl = use_pdl(q, pdl)
    fence = q.is_cuda and os.environ.get("TRITON_INTERPRET") != "1"
    _score_topk_kernel[(B * Hkv * nprog,)](
        q, mean, std, page_table, lengths, scores, cnt, out,
        q.stride(0), q.stride(1), mean.stride(0), mean.stride(1), std.stride(0), std.stride(1),
        page_table.stride(0), scores.stride(0), scores.stride(1), out.stride(1),
        float(lam), int(sink_pages), Hkv, page_size, ppp, nprog, k,
        G=H // Hkv, GP=max(16, triton.next_power_of_2(H // Hkv)), D=D, BLOCK_P=block_p,
        FORCE=True, IEEE=f32_dot(mean.dtype), NUM_STAGES=num_stages, PDL_ON=pdl,
        BLOCK_K=triton.next_power_of_2(max(P, 16)), FENCE=fence, num_warps=num_warps,
        **({"launch_pdl": True} if pdl else {}),
        **({"maxnreg": int(maxnreg)} if maxnreg and q.is_cuda else {}),
    )
    return scores, out
