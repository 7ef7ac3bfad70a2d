"""The decoder's one-launch RMSNorm and RoPE kernels against their PyTorch paths."""

import pytest
import torch

from unique_asr.models import decoder as dec
from unique_asr.models import triton_ops
from unique_asr.models.llm_config import LLMConfig
from unique_asr.models.rope import apply_rope, rope_angles

DEV = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("dtype,N", [(torch.float32, 576), (torch.bfloat16, 64),
                                     (torch.float16, 100)])
def test_rms_norm_matches_module(dtype, N):
    g = torch.Generator(device=DEV).manual_seed(0)
    norm = dec.RMSNorm(N, eps=1e-5).to(DEV)
    norm.weight.data = torch.randn(N, device=DEV, generator=g)
    x = (3 * torch.randn(2, 5, 2 * N, device=DEV, generator=g)).to(dtype)[..., ::2]  # strided
    with torch.enable_grad():  # the module's PyTorch path
        ref = norm(x)
    got = triton_ops.rms_norm(x, norm.weight, norm.eps)
    assert got.dtype == dtype and got.shape == x.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(got.float(), ref.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("per_seq", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_matches_reference(per_seq, dtype):
    B, H, L, D = 3, 4, 5, 64
    g = torch.Generator(device=DEV).manual_seed(1)
    # [B, L, H, D] transposed to [B, H, L, D], as the decoder's projections come out
    x = torch.randn(B, L, H, D, device=DEV, generator=g).to(dtype).transpose(1, 2)
    pos = (torch.randint(0, 40000, (B, L), device=DEV, generator=g) if per_seq
           else torch.arange(7, 7 + L, device=DEV))
    cos, sin = rope_angles(pos, D, 1e5)
    if per_seq:
        cos, sin = cos[:, None], sin[:, None]
    got = triton_ops.apply_rope(x, cos, sin)
    ref = apply_rope(x, cos, sin)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(got.float(), ref.float(), atol=tol, rtol=tol)
    with pytest.raises(ValueError, match="broadcast"):
        triton_ops.apply_rope(x, cos[..., :3, :], sin[..., :3, :])


def test_decoder_with_fused_ops_equals_pytorch(monkeypatch):
    """A whole decoder forward (Qwen3-style q/k norms included) gives the same logits through
    the kernels as through the PyTorch ops."""
    cfg = LLMConfig(vocab=50, hidden=48, layers=2, heads=4, kv_heads=2, head_dim=12, ffn=64,
                    qk_norm=True)
    torch.manual_seed(0)
    model = dec.Decoder(cfg).to(DEV).eval()
    x = torch.randn(2, 7, 48, device=DEV)
    pos = torch.arange(7, device=DEV)
    with torch.no_grad():
        monkeypatch.setattr(dec, "fused_inference", lambda t: False)
        ref = model.logits(model.hidden(x, pos))
        monkeypatch.setattr(dec, "fused_inference", lambda t: True)
        got = model.logits(model.hidden(x, pos))
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
