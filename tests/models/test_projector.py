"""The projector's adapter layers (model.adapter_layers): outputs independent of padding and of
audio beyond adapter_span_s, so training windows and whole recordings see the same span."""

import torch

from unique_asr.models import ModelConfig
from unique_asr.models.projector import Projector


def _projector():
    torch.manual_seed(0)
    cfg = ModelConfig(n_text=40, adapter_layers=2, adapter_span_s=0.4)  # 5 tokens of 80 ms
    return Projector(cfg, 16, 32).eval()


def test_adapter_ignores_padding_and_audio_beyond_its_span():
    proj = _projector()
    g = torch.Generator().manual_seed(1)
    enc = torch.randn(1, 80, 16, generator=g)  # 40 audio tokens (stack 2)
    with torch.no_grad():
        out, lens = proj(enc, torch.tensor([80]))
        padded, _ = proj(torch.cat([enc, torch.randn(1, 20, 16, generator=g)], 1),
                         torch.tensor([80]))
        assert lens.tolist() == [40]
        assert (padded[:, :40] - out).abs().max() < 1e-5
        far = enc.clone()
        far[:, 60:] += 5  # tokens 30..39 change
        moved, _ = proj(far, torch.tensor([80]))
    # two layers of +-5 tokens: tokens up to 19 cannot see token 30; token 29 can
    assert (moved[:, :20] - out[:, :20]).abs().max() < 1e-5
    assert (moved[:, 20:30] - out[:, 20:30]).abs().max() > 1e-3


def test_adapter_trains():
    proj = _projector()
    proj.train()
    out, _ = proj(torch.randn(2, 40, 16), torch.tensor([40, 30]))
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in proj.adapter.parameters())


def test_adapter_blocks_equal_one_pass_and_eval_has_no_nan():
    """A long row in blocks gives what one pass over it gives; padded rows stay finite in eval
    (a padded query with no key in reach must not turn into NaN)."""
    proj = _projector()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(300, 32, generator=g)
    with torch.no_grad():
        whole = proj._adapt(x, block=1000)
        blocks = proj._adapt(x, block=64)
        assert (whole - blocks).abs().max() < 1e-5
        out, _ = proj(torch.randn(2, 200, 16, generator=g), torch.tensor([200, 40]))
    assert torch.isfinite(out).all()
