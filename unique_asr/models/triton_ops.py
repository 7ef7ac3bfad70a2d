"""RMSNorm and RoPE in one Triton launch each, for decoding on the GPU.

Why: a graphed decode step of a 16-layer model runs hundreds of tiny elementwise kernels (the
PyTorch RMSNorm is a cast, a square, a mean, an rsqrt and three products; RoPE two strided
slices, four products, a stack and a cast), each a launch of a few microseconds on a tensor of a
few kilobytes (bench/NOTES.md, "Whole-model decode"). These kernels do the same arithmetic in
float32 in one pass. Forward only: the decoder uses them when no gradient is being recorded on
CUDA (decoder.fused_inference), the PyTorch modules otherwise; references: decoder.RMSNorm's PyTorch
path and rope.apply_rope, which the tests compare against.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rms_norm_kernel(x_ptr, w_ptr, y_ptr, stride_x, N, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(x_ptr + row * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    r = 1.0 / tl.sqrt(tl.sum(x * x, 0) / N + eps)
    tl.store(y_ptr + row * N + offs, (x * r * w).to(y_ptr.dtype.element_ty), mask=mask)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x [..., N] -> x / sqrt(mean(x^2) + eps) * weight, in x's dtype (float32 inside)."""
    N = x.shape[-1]
    x2 = x.reshape(-1, N)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x2.shape[0]:
        _rms_norm_kernel[(x2.shape[0],)](x2, weight, y, x2.stride(0), N, eps,
                                         BLOCK=triton.next_power_of_2(N), num_warps=4)
    return y


@triton.jit
def _rope_kernel(x_ptr, c_ptr, s_ptr, y_ptr, H, L, stride_b, stride_h, stride_l, stride_cb,
                 HALF: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0).to(tl.int64)
    b = r // (H * L)
    h = (r // L) % H
    pos = r % L
    i = tl.arange(0, BLOCK)
    mask = i < HALF
    base = x_ptr + b * stride_b + h * stride_h + pos * stride_l
    even = tl.load(base + 2 * i, mask=mask, other=0.0).to(tl.float32)
    odd = tl.load(base + 2 * i + 1, mask=mask, other=0.0).to(tl.float32)
    at = b * stride_cb + pos * HALF + i
    c = tl.load(c_ptr + at, mask=mask, other=0.0)
    s = tl.load(s_ptr + at, mask=mask, other=0.0)
    out = y_ptr + r * (2 * HALF)
    tl.store(out + 2 * i, (even * c - odd * s).to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(out + 2 * i + 1, (even * s + odd * c).to(y_ptr.dtype.element_ty), mask=mask)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """rope.apply_rope for x [B, H, L, D] (any strides, unit stride in D) and float32 cos/sin
    [L, D/2] or [B, 1, L, D/2] (per-sequence positions); returns a contiguous [B, H, L, D]."""
    B, H, L, D = x.shape
    if x.stride(-1) != 1:
        x = x.contiguous()
    half = D // 2
    cb = cos.shape[0] if cos.dim() == 4 else 1
    if cos.shape[-2:] != (L, half) or cb not in (1, B):
        raise ValueError(f"triton_ops.apply_rope: cos {tuple(cos.shape)} does not broadcast to "
                         f"[{B}, 1, {L}, {half}]")
    c = cos.reshape(cb, L, half).float().contiguous()
    s = sin.reshape(cb, L, half).float().contiguous()
    y = torch.empty(B, H, L, D, dtype=x.dtype, device=x.device)
    if y.numel():
        _rope_kernel[(B * H * L,)](x, c, s, y, H, L, x.stride(0), x.stride(1), x.stride(2),
                                   L * half if cb > 1 else 0, HALF=half,
                                   BLOCK=triton.next_power_of_2(half), num_warps=1)
    return y
