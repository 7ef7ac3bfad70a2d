"""One decode step's K/V write and page-statistics update in one launch per layer.

Why fused: PagedKVCache.write in a decode step (one new token per row, each on a page of its
own) is ~20 small gathers, wheres and scatters per layer in PyTorch; at the Fig. 3 geometry they
were a large part of the ~1.3 ms of small kernels in a 6.7-ms graphed step (bench/NOTES.md).
One program per (row, KV head) stores the token's key and value into its page slot, restarts or
extends the page's running sum and sum of squares, and writes the page's mean (cache dtype) and
std (and Quest's min/max) from them; with int8 means (stats_dtype=int8) the mean is stored as
its offset from the sequence's centre in int8 with a float32 scale per (page, head), as
quantize_means does. Reference: PagedKVCache.write's PyTorch path, which the
tests compare against field by field.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from unique_asr.attention.paged_cache import QUANT


@triton.jit
def _decode_write_kernel(
    k_in, v_in, pid_ptr, off_ptr, fresh_ptr, count_ptr,
    kc, vc, ksum, ksq, mean, std, kmin, kmax, center, page_seq, mean_scale,
    stride_it, stride_ih, stride_cp, stride_ch, stride_cs, stride_sp, stride_sh, stride_qp,
    stride_cs_seq, HKV, D: tl.constexpr, DP: tl.constexpr, QUEST: tl.constexpr,
    STATS: tl.constexpr, TOP: tl.constexpr,
):
    t = tl.program_id(0) // HKV
    h = tl.program_id(0) % HKV
    offs = tl.arange(0, DP)
    dmask = offs < D
    page = tl.load(pid_ptr + t).to(tl.int64)
    slot = tl.load(off_ptr + t).to(tl.int64)
    starts = tl.load(fresh_ptr + t)
    fresh = starts != 0
    keep = starts == 0  # the page's earlier tokens count
    cnt = tl.maximum(tl.load(count_ptr + page).to(tl.float32), 1.0)

    k = tl.load(k_in + t * stride_it + h * stride_ih + offs, mask=dmask, other=0.0)
    v = tl.load(v_in + t * stride_it + h * stride_ih + offs, mask=dmask, other=0.0)
    kv_at = page * stride_cp + h * stride_ch + slot * stride_cs + offs
    kq = k.to(kc.dtype.element_ty)
    tl.store(kc + kv_at, kq, mask=dmask)
    tl.store(vc + kv_at, v.to(vc.dtype.element_ty), mask=dmask)

    kf = k.to(tl.float32)
    st = page * stride_sp + h * stride_sh
    s_old = tl.load(ksum + st + offs, mask=dmask & keep, other=0.0)
    s_new = s_old + kf
    tl.store(ksum + st + offs, s_new, mask=dmask)
    q_at = page * stride_qp + h
    q_old = tl.load(ksq + q_at, mask=keep, other=0.0)
    q_new = q_old + tl.sum(kf * kf, 0)
    tl.store(ksq + q_at, q_new)

    m = s_new / cnt
    if STATS == 0:  # means in the cache dtype
        tl.store(mean + st + offs, m.to(mean.dtype.element_ty), mask=dmask)
    else:  # int8: offset from the sequence's centre, one float32 scale per (page, head)
        seq = tl.load(page_seq + page).to(tl.int64)
        c = tl.load(center + seq * stride_cs_seq + h * D + offs, mask=dmask, other=0.0)
        x = tl.where(dmask, m - c, 0.0)
        scale = tl.maximum(tl.max(tl.abs(x), 0), 1e-30) / TOP
        y = x / scale
        f = tl.floor(y + 0.5)  # round half to even, as torch.round
        odd = (f - 2.0 * tl.floor(f * 0.5)) != 0.0
        r = tl.where(((f - y) == 0.5) & odd, f - 1.0, f)
        y = tl.minimum(tl.maximum(r, -TOP), TOP)
        tl.store(mean + st + offs, y.to(mean.dtype.element_ty), mask=dmask)
        tl.store(mean_scale + q_at, scale)
    var = q_new / cnt - tl.sum(m * m, 0)
    tl.store(std + q_at, tl.sqrt(tl.maximum(var, 0.0)))
    if QUEST:
        lo = tl.load(kmin + st + offs, mask=dmask, other=0.0)
        hi = tl.load(kmax + st + offs, mask=dmask, other=0.0)
        lo = tl.where(fresh, kq, tl.minimum(lo, kq))
        hi = tl.where(fresh, kq, tl.maximum(hi, kq))
        tl.store(kmin + st + offs, lo, mask=dmask)
        tl.store(kmax + st + offs, hi, mask=dmask)


def decode_write(cache, layer: int, k: torch.Tensor, v: torch.Tensor, pid: torch.Tensor,
                 off: torch.Tensor, fresh: torch.Tensor) -> None:
    """PagedKVCache.write for one token per row on pages of their own (apply_decode): k, v
    [T, Hkv, D]; pid, off [T] the tokens' physical pages and slots; fresh [T] bool, the token
    starts its page. bf16/fp32 or int8 means (int8 needs its sequences' centres: the prefill's
    write sets them); fp8 means keep the PyTorch write (PagedKVCache.fused_write)."""
    T, H, D = k.shape
    if T == 0:
        return
    k, v = k.contiguous(), v.contiguous()
    kc, vc = cache.k[layer], cache.v[layer]
    ksum, ksq = cache.ksum[layer], cache.ksq[layer]
    quest = cache.quest
    kmin = cache.kmin[layer] if quest else kc
    kmax = cache.kmax[layer] if quest else kc
    stats = {"bf16": 0, "int8": 1}[cache._stats]
    if stats:
        center, page_seq, scale = cache.center[layer], cache.page_seq, cache.mean_scale[layer]
        top = QUANT[cache._stats][1]
    else:  # unused pointers
        center, page_seq, scale, top = ksum, pid, cache.std[layer], 1.0
    _decode_write_kernel[(T * H,)](
        k, v, pid, off, fresh, cache.page_count,
        kc, vc, ksum, ksq, cache.mean[layer], cache.std[layer], kmin, kmax,
        center, page_seq, scale,
        k.stride(0), k.stride(1), kc.stride(0), kc.stride(1), kc.stride(2),
        ksum.stride(0), ksum.stride(1), ksq.stride(0), center.stride(0),
        H, D=D, DP=triton.next_power_of_2(D), QUEST=quest, STATS=stats, TOP=top, num_warps=1,
    )
