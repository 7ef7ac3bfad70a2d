"""Appending chunks to a decode cache (extend, the interleaved layout's chunk prefill) against one
dense prefill of the whole sequence: same logits, for the dense and the paged caches, for all
rows or a subset of them, and decode steps after an extend see the appended tokens."""

import pytest
import torch

from unique_asr.attention.api import SparseConfig
from unique_asr.models import ModelConfig, build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(n_text=40)).eval()


def _full_logits(model, x):
    """Logits at every position of x [B, L, D] in one causal pass (no cache)."""
    with torch.inference_mode():
        h = model.decoder.hidden(x, torch.arange(x.shape[1]))
        return model.decoder.logits(h).float()


SPARSE = [SparseConfig(), SparseConfig("unique", 1024)]


@pytest.mark.parametrize("sparse", SPARSE, ids=["dense", "unique"])
def test_prefill_extend_step_equals_one_pass(model, sparse):
    g = torch.Generator().manual_seed(0)
    D = model.cfg.llm.dim
    x = torch.randn(2, 60, D, generator=g)
    tok = torch.randint(0, 40, (2,), generator=g)
    with torch.inference_mode():
        x_tok = model.decoder.embed(tok)
    # row 0: 20 prefilled, 25 appended, one token stepped; row 1: 30, 11, one token
    n1, n2 = torch.tensor([20, 30]), torch.tensor([25, 11])
    with torch.inference_mode():
        cache = model.new_cache(2, 80, sparse=sparse)
        model.decoder.hidden(x, torch.arange(60), cache, "prefill", n1)
        cache.set_lens(n1)
        chunk = torch.stack([x[0, 20:45], torch.cat([x[1, 30:41], x[1, :14] * 0])])
        got = model.extend(chunk, n2, cache)
        assert cache.lens.tolist() == [45, 41]
        stepped = model.decode_step(tok, cache)
    for b, (a, m) in enumerate(zip(n1.tolist(), n2.tolist())):
        seq = torch.cat([x[b, : a + m], x_tok[b: b + 1]])[None]
        want = _full_logits(model, seq)[0]
        scale = want.abs().max()
        assert (got[b] - want[a + m - 1]).abs().max() <= 1e-4 * scale
        assert (stepped[b] - want[-1]).abs().max() <= 1e-4 * scale


@pytest.mark.parametrize("sparse", SPARSE, ids=["dense", "unique"])
def test_extend_some_rows_leaves_the_others(model, sparse):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 40, model.cfg.llm.dim, generator=g)
    with torch.inference_mode():
        cache = model.new_cache(3, 80, sparse=sparse)
        lens = torch.tensor([10, 12, 14])
        model.decoder.hidden(x, torch.arange(40), cache, "prefill", lens)
        cache.set_lens(lens)
        got = model.extend(x[[1], 12:20], torch.tensor([8]), cache, rows=torch.tensor([1]))
        assert cache.lens.tolist() == [10, 20, 14]
        want = _full_logits(model, x[1:2, :20])[0, -1]
        assert (got[0] - want).abs().max() <= 1e-4 * want.abs().max()
        # row 0 and 2 continue from their own prefixes
        tok = torch.tensor([3, 4, 5])
        stepped = model.decode_step(tok, cache)
    with torch.inference_mode():
        emb = model.decoder.embed(tok)
    for b, a in ((0, 10), (2, 14)):
        seq = torch.cat([x[b, :a], emb[b: b + 1]])[None]
        want = _full_logits(model, seq)[0, -1]
        assert (stepped[b] - want).abs().max() <= 1e-4 * want.abs().max()
