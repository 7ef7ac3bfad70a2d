"""Paged UNIQUE decode caches (models/paged_attention_cache.py) against the dense cache and the
attention library's reference: exact equivalence when the budget covers the context, the
reference's selection and output under a small budget, beam-search reorder, every method of
attention.api.METHODS."""

import os

import pytest
import torch

from unique_asr.attention import reference as R
from unique_asr.attention.api import METHODS, SparseConfig
from unique_asr.decoding.generate import beam_search, greedy_search
from unique_asr.models import ModelConfig, build_model
from unique_asr.models.attention import DenseKVCache, new_decode_cache
from unique_asr.models.paged_attention_cache import PagedAttentionCache

INTERP = os.environ.get("TRITON_INTERPRET") == "1"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(n_text=40)).eval()


def _audio(model, lens, seed=0):
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor(lens)
    return torch.randn(len(lens), int(lens.max()), model.cfg.llm.dim, generator=g) * 2, lens


def _teacher_forced_logits(model, sparse, emb, lens, tokens):
    """Logits of prefill + one step per column of tokens [B, T] through one decode cache."""
    with torch.inference_mode():
        cache = model.new_cache(emb.shape[0], int(lens.max()) + 1 + tokens.shape[1],
                                sparse=sparse)
        out = [model.prefill(emb, lens, cache)]
        for t in range(tokens.shape[1]):
            out.append(model.decode_step(tokens[:, t], cache))
    return torch.stack(out, 1)


def test_budget_above_context_equals_dense(model):
    """Greedy and beam transcripts are identical to dense, logits equal to float rounding."""
    emb, lens = _audio(model, [70, 41, 23])
    dense, _ = greedy_search(model, emb, lens, 24, SparseConfig())
    uniq, _ = greedy_search(model, emb, lens, 24, SparseConfig("unique", 1024))
    assert uniq == dense and sum(map(len, dense)) > 0
    bd, _ = beam_search(model, emb, lens, 12, 3, 1.0, SparseConfig())
    bu, _ = beam_search(model, emb, lens, 12, 3, 1.0, SparseConfig("unique", 1024))
    assert bu == bd
    tokens = torch.randint(0, 40, (3, 12), generator=torch.Generator().manual_seed(1))
    ld = _teacher_forced_logits(model, SparseConfig(), emb, lens, tokens)
    for method in ("unique", "quest", "oracle"):
        lu = _teacher_forced_logits(model, SparseConfig(method, 1024), emb, lens, tokens)
        assert (lu - ld).abs().max() <= 1e-4 * ld.abs().max()


def test_small_budget_changes_only_the_selection(model):
    """Budget 16 (2 of up to 11 pages): logits move away from dense (sparsity is real), unless
    every layer is listed in dense_layers."""
    emb, lens = _audio(model, [70, 41, 23])
    tokens = torch.randint(0, 40, (3, 8), generator=torch.Generator().manual_seed(2))
    ld = _teacher_forced_logits(model, SparseConfig(), emb, lens, tokens)
    lu = _teacher_forced_logits(model, SparseConfig("unique", 16), emb, lens, tokens)
    assert torch.equal(lu[:, 0], ld[:, 0])  # prefill is dense
    assert (lu[:, 1:] - ld[:, 1:]).abs().max() > 1e-3
    every = SparseConfig("unique", 16, dense_layers=list(range(model.cfg.llm.layers)))
    with torch.inference_mode():
        cache = model.new_cache(3, 80, sparse=every)
        lo = [model.prefill(emb, lens, cache)]
        lo += [model.decode_step(tokens[:, t], cache) for t in range(tokens.shape[1])]
    assert (torch.stack(lo, 1) - ld).abs().max() <= 1e-4 * ld.abs().max()


@pytest.mark.parametrize("method", METHODS)
def test_all_methods_decode(model, method):
    emb, lens = _audio(model, [50, 17])
    hyps, stats = greedy_search(model, emb, lens, 10, SparseConfig(method, 16))
    assert len(hyps) == 2 and stats.steps >= 1
    assert all(0 <= t < model.cfg.n_text or t == model.cfg.eos_id for h in hyps for t in h)


def _rand(g, *shape):
    return torch.randn(*shape, generator=g) + 0.5 * torch.randn(shape[-1], generator=g)


def _ref_step(q, dense: DenseKVCache, layer, method, budget, sink):
    """The reference's definition (score the contiguous keys, select, attend) on the dense
    cache's K/V, which already hold the new token: (out, selected pages or None)."""
    n = int(dense.lens.max()) + 1
    k, v, lens = dense.k[layer][:, :, :n], dense.v[layer][:, :, :n], dense.lens + 1
    if method == "dense" or n <= budget:
        return R.dense_attention(q, k, v, lens), None
    sel = R.select_pages(R.score_pages(method, q, k, lens, 8), lens, 8, budget // 8, sink)
    return R.sparse_attention(q, k, v, lens, sel, 8), sel


IMPLS = ["reference"] + (["triton"] if INTERP else [])  # CPU tensors: Triton's interpreter


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("method", METHODS)
def test_steps_and_reorder_match_reference(method, impl):
    """Paged cache and dense cache in lockstep on random q/k/v: prefill, steps, a beam-style
    reorder (rows duplicated and dropped, pool grown), steps, a compaction, steps. Every step's
    output equals the reference's top-k sparse attention over the same keys, and the paged
    page statistics equal those of the contiguous keys."""
    g = torch.Generator().manual_seed(3)
    L, Hkv, G, D, budget, sink = 2, 2, 4, 16, 24, 1
    lens = torch.tensor([37, 12, 20])
    cfg = SparseConfig(method, budget, sink_pages=sink, impl=impl)
    paged = PagedAttentionCache(L, 3, 80, Hkv, D, "cpu", torch.float32, cfg)
    dense = DenseKVCache(L, 3, 80, Hkv, D, "cpu", torch.float32)
    Lp = int(lens.max())
    for layer in range(L):
        q, k, v = _rand(g, 3, Hkv * G, Lp, D), _rand(g, 3, Hkv, Lp, D), _rand(g, 3, Hkv, Lp, D)
        assert torch.equal(paged.prefill(layer, q, k, v, lens), dense.prefill(layer, q, k, v, lens))
    paged.set_lens(lens)
    dense.set_lens(lens)
    plan = [None, None, torch.tensor([2, 0, 0, 2, 1, 0]), None, None, torch.tensor([4, 1, 5]),
            None]
    n_sparse = 0
    for index in plan:
        if index is not None:
            paged.reorder(index)
            dense.reorder(index)
            continue
        B = dense.lens.shape[0]
        for layer in range(L):
            q, k, v = _rand(g, B, Hkv * G, 1, D), _rand(g, B, Hkv, 1, D), _rand(g, B, Hkv, 1, D)
            out = paged.step(layer, q, k, v)[:, :, 0]
            dense.step(layer, q, k, v)
            ref, sel = _ref_step(q[:, :, 0], dense, layer, method, budget, sink)
            n_sparse += int(sel is not None)
            assert (out - ref).abs().max() <= 1e-5 * ref.abs().max(), (method, impl)
        paged.advance(1)
        dense.advance(1)
        assert torch.equal(paged.lens, dense.lens)
        assert [paged.kv.seq_length(s) for s in paged.slots] == paged.lens.tolist()
    assert n_sparse > 0 or method == "dense"
    for layer in range(L):  # statistics of copied/grown pages equal those of the keys
        k, _, klens = paged.kv.contiguous(layer, paged.slots)
        n = int(dense.lens.max())
        keep = (torch.arange(n)[None, :] < dense.lens[:, None])[:, None, :, None]
        assert torch.equal(klens.long(), dense.lens)
        assert torch.equal(k, dense.k[layer][:, :, :n] * keep)  # dense keeps stale padding
        mean, std = R.page_stats_varlen(k, klens, 8)
        pt = paged.kv.page_table[paged.slots][:, : mean.shape[2]].long()
        for b in range(pt.shape[0]):
            npg = -(-int(klens[b]) // 8)
            got_m = paged.kv.mean[layer][pt[b, :npg]].transpose(0, 1)
            got_s = paged.kv.std[layer][pt[b, :npg]].transpose(0, 1)
            assert torch.allclose(got_m, mean[b, :, :npg], atol=1e-5)
            assert torch.allclose(got_s, std[b, :, :npg], atol=1e-4)


@pytest.mark.parametrize("stats_dtype", ["fp8", "int8"])
def test_one_byte_stats_survive_reorder_and_growth(stats_dtype):
    """stats_dtype=fp8 / int8: a beam-style reorder (rows duplicated, pool grown) copies each
    page's one-byte mean, its scale and the sequence's centre, so the copies' dequantized means
    stay the means of their keys (within the format's precision) and the steps run."""
    g = torch.Generator().manual_seed(5)
    L, Hkv, G, D = 2, 2, 4, 16
    lens = torch.tensor([37, 12, 20])
    paged = PagedAttentionCache(L, 3, 80, Hkv, D, "cpu", torch.float32,
                                SparseConfig("unique", 24, stats_dtype=stats_dtype))
    for layer in range(L):
        q, k, v = _rand(g, 3, Hkv * G, 37, D), _rand(g, 3, Hkv, 37, D), _rand(g, 3, Hkv, 37, D)
        paged.prefill(layer, q, k, v, lens)
    paged.set_lens(lens)
    centers = [paged.kv.row_centers(layer, paged.slots) for layer in range(L)]
    index = torch.tensor([2, 0, 0, 2, 1, 0])
    paged.reorder(index)
    for layer in range(L):
        torch.testing.assert_close(paged.kv.row_centers(layer, paged.slots), centers[layer][index])
        q, k, v = _rand(g, 6, Hkv * G, 1, D), _rand(g, 6, Hkv, 1, D), _rand(g, 6, Hkv, 1, D)
        assert torch.isfinite(paged.step(layer, q, k, v)).all()
    paged.advance(1)
    for layer in range(L):
        k, _, klens = paged.kv.contiguous(layer, paged.slots)
        mean, _ = R.page_stats_varlen(k, klens, 8)
        pt = paged.kv.page_table[paged.slots].long()
        for b in range(len(paged.slots)):
            npg = -(-int(klens[b]) // 8)
            got = paged.kv.page_means(layer)[pt[b, :npg]].transpose(0, 1)
            assert torch.allclose(got, mean[b, :, :npg], atol=0.08), (layer, b)


def test_dense_cache_tracks_its_longest_row_on_the_host():
    """DenseKVCache.top (what a step reads instead of lens.max() on the device) follows the
    lengths through set_lens, advance, reset, reorder, and the full-cache error uses it."""
    c = DenseKVCache(1, 3, 10, 1, 4, "cpu", torch.float32)
    c.set_lens(torch.tensor([3, 7, 2]))
    c.advance(2)
    assert c.top == int(c.lens.max()) == 9
    c.reorder(torch.tensor([0, 2]))  # the longest row leaves
    assert c.top == int(c.lens.max()) == 5
    c.set_lens(torch.tensor([8]), rows=torch.tensor([1]))
    assert c.top == 8
    c.reset(torch.tensor([1]))
    assert c.top == 5
    assert c.low == int(c.lens.min()) == 0  # the reset row
    c.set_lens(torch.tensor([10, 1]))
    with pytest.raises(ValueError, match="KV cache full"):
        c.step(0, *(torch.randn(2, 1, 1, 4) for _ in range(3)))


def test_dense_cache_beam_reorder_in_place_equals_a_gather():
    """A reorder that keeps the row count (beam search) rewrites only the moved rows, in place
    (the storage a captured step points at stays), and reads as index_select would up to each
    row's length; compaction still allocates."""
    g = torch.Generator().manual_seed(0)
    c = DenseKVCache(2, 4, 12, 2, 3, "cpu", torch.float32)
    for t in c.k + c.v:
        t.copy_(torch.randn(t.shape, generator=g))
    c.set_lens(torch.tensor([5, 9, 7, 6]))
    before = [t.clone() for t in c.k + c.v]
    ptrs = [t.data_ptr() for t in c.k + c.v]
    index = torch.tensor([1, 0, 1, 3])  # a swap, a duplicate, a row kept
    c.reorder(index)
    assert [t.data_ptr() for t in c.k + c.v] == ptrs and c.storage_version == 0
    assert c.lens.tolist() == [9, 5, 9, 6] and c.top == 9 and c.low == 5
    for got, old in zip(c.k + c.v, before):
        want = old.index_select(0, index)
        for r, n in enumerate(c.lens.tolist()):
            assert torch.equal(got[r, :, :n], want[r, :, :n]), r
    c.reorder(torch.tensor([0, 1, 2, 3]))  # no-op
    assert c.lens.tolist() == [9, 5, 9, 6]
    c.reorder(torch.tensor([2, 3]))  # compaction
    assert c.k[0].shape[0] == 2 and c.storage_version == 1 and c.lens.tolist() == [9, 6]


def test_dense_cache_step_without_mask_when_rows_are_equal():
    """Rows of one length attend without a mask (low == top); the output is the masked one's."""
    g = torch.Generator().manual_seed(0)
    B, H, Hkv, D, L = 3, 4, 2, 8, 9
    a = DenseKVCache(1, B, 16, Hkv, D, "cpu", torch.float32)
    b = DenseKVCache(1, B + 1, 16, Hkv, D, "cpu", torch.float32)  # a 4th, shorter row: masked
    k, v = torch.randn(B, Hkv, L, D, generator=g), torch.randn(B, Hkv, L, D, generator=g)
    a.prefill(0, torch.randn(B, H, L, D), k, v, None)
    b.prefill(0, torch.randn(B, H, L, D), k, v, None, rows=torch.arange(B))
    a.set_lens(torch.full((B,), L))
    b.set_lens(torch.tensor([L] * B + [2]))
    assert a.low == a.top and b.low != b.top
    q, k1, v1 = (torch.randn(B + 1, x, 1, D, generator=g) for x in (H, Hkv, Hkv))
    got = a.step(0, q[:B], k1[:B], v1[:B])
    want = b.step(0, q, k1, v1)
    torch.testing.assert_close(got, want[:B])
    # the short row still sees only its own 3 tokens (2 + the new one): the mask is kept there
    kk, vv = b.k[0][B:, :, :3], b.v[0][B:, :, :3]
    short = torch.nn.functional.scaled_dot_product_attention(q[B:], kk, vv, enable_gqa=True)
    torch.testing.assert_close(want[B:], short)


def test_registry_and_config():
    """One cache per api.METHODS entry: dense is the contiguous cache, the rest are paged."""
    for method in METHODS:
        cache = new_decode_cache(1, 1, 16, 1, 8, "cpu", torch.float32, SparseConfig(method, 8))
        assert isinstance(cache, DenseKVCache if method == "dense" else PagedAttentionCache)
    assert isinstance(new_decode_cache(1, 1, 16, 1, 8, "cpu", torch.float32), DenseKVCache)
    with pytest.raises(ValueError, match=r"decode\.sparse\.budget=4"):
        PagedAttentionCache(1, 1, 16, 1, 8, "cpu", torch.float32, SparseConfig("unique", 4))
    with pytest.raises(ValueError, match=r"decode\.sparse\.impl='fast'"):
        PagedAttentionCache(1, 1, 16, 1, 8, "cpu", torch.float32,
                            SparseConfig("unique", 8, impl="fast"))


def test_static_step_view_scores_a_power_of_two_of_the_longest_row():
    """The static step view's pages per row (its graph key) follow the longest row in use,
    rounded up to a power of two (>= 16), capped at the cache's pages per sequence."""
    sparse = SparseConfig("unique", 16, page_size=8)
    cache = PagedAttentionCache(1, 2, 300, 2, 8, "cpu", torch.float32, sparse)  # 38 pages
    view = cache.step_view(2, static=True)
    for s, n in zip(cache.slots, (129, 40)):
        cache.kv.reserve([s], n)
        cache.kv.write(0, torch.randn(n, 2, 8), torch.randn(n, 2, 8))
    cache.lens[:] = torch.tensor([129, 40])
    assert view.prepare()[1] == 32  # 130 tokens: 17 pages
    for _ in range(6):
        view.step(0, torch.randn(2, 2, 1, 8), torch.randn(2, 2, 1, 8), torch.randn(2, 2, 1, 8))
        cache.advance(1)
        key = view.prepare()
    assert cache.kv.seq_length(cache.slots[0]) == 136 and key[1] == 32  # 17 pages
    cache.kv.reserve([cache.slots[0]], 150)  # 286 tokens: 36 pages -> 64, capped at 38
    cache.kv.write(0, torch.randn(150, 2, 8), torch.randn(150, 2, 8))
    cache.lens[0] = 286
    assert view.prepare()[1] == 38
    assert cache.step_view(2, static=False).prepare()[1] is None
