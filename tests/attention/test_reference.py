"""Properties of the plain-PyTorch reference that the kernels are tested against."""

import pytest
import torch
from attn_testutil import DEV, make_cache

from unique_asr.attention import reference as R


def _rand(B=3, H=8, Hkv=2, L=45, D=16, dt=torch.float64):
    q = torch.randn(B, H, D, dtype=dt)
    k = torch.randn(B, Hkv, L, D, dtype=dt) + torch.randn(1, 1, 1, D, dtype=dt)
    v = torch.randn(B, Hkv, L, D, dtype=dt)
    return q, k, v


def test_varlen_stats_match_page_stats_and_definition():
    _q, k, _v = _rand()
    lens = torch.tensor([45, 45, 45])
    m1, s1 = R.page_stats_varlen(k, lens, 8)
    m2, s2 = R.page_stats(k, 8)
    assert torch.allclose(m1.float(), m2, atol=1e-5) and torch.allclose(s1.float(), s2, atol=1e-4)
    # std is the L2 norm of the per-dimension population std, with a partial page of 3 tokens
    lens = torch.tensor([19, 45, 8])
    m, s = R.page_stats_varlen(k, lens, 8)
    page = k[0, 1, 16:19]
    assert torch.allclose(s[0, 1, 2], page.std(0, unbiased=False).norm())
    assert torch.allclose(m[0, 1, 2], page.mean(0))
    assert (m[0, :, 3:] == 0).all() and (s[2, :, 1:] == 0).all()


def test_quest_bounds_oracle_and_scores_shapes():
    q, k, _v = _rand()
    lens = torch.tensor([45, 30, 9])
    quest = R.score_pages("quest", q, k, lens, 8)
    oracle = R.score_pages("oracle", q, k, lens, 8)
    n = R.num_pages(lens, 8)
    for b in range(3):
        # Quest is an upper bound of the true page max of q.k
        assert (quest[b, :, : n[b]] >= oracle[b, :, : n[b]] - 1e-9).all()
    uniq = R.score_pages("unique", q, k, lens, 8)
    mo = R.score_pages("meanonly", q, k, lens, 8)
    assert (uniq >= mo - 1e-5).all()  # the std term is non-negative


def test_select_rules_newest_sinks_ties_dense():
    lens = torch.tensor([80, 24, 41])  # 10, 3, 6 pages
    scores = torch.zeros(3, 1, 10)
    scores[0, 0] = torch.tensor([5.0, 1, 9, 9, 9, 0, 0, 0, 0, -1])
    sel = R.select_pages(scores, lens, 8, k=3)
    assert sel[0, 0].tolist() == [2, 3, 9]  # newest page 9, then ties 9,9,9 -> lowest index
    assert sel[1, 0].tolist() == [0, 1, 2]  # 3 pages <= k: dense
    sel = R.select_pages(scores, lens, 8, k=3, sink_pages=1)
    assert sel[0, 0].tolist() == [0, 2, 9]
    sel = R.select_pages(scores, lens, 8, k=1, sink_pages=2)
    assert sel[0, 0].tolist() == [9] and sel[2, 0].tolist() == [5]


def test_sparse_attention_all_pages_is_dense():
    q, k, v = _rand()
    lens = torch.tensor([45, 17, 1])
    dense = R.dense_attention(q, k, v, lens)
    all_pages = torch.arange(6).expand(3, 2, 6)  # 6 pages >= every context
    assert torch.allclose(R.sparse_attention(q, k, v, lens, all_pages, 8), dense, atol=1e-12)
    # one token: output is that token's value for every query head of its KV head
    assert torch.allclose(dense[2].view(2, 4, 16), v[2, :, :1].expand(2, 4, 16))


@pytest.mark.parametrize("method", ["unique", "meanonly", "quest", "oracle"])
def test_paged_decode_step_matches_contiguous_definition(method):
    """decode_step on a paged cache (statistics kept incrementally, only the selected pages
    read) equals scoring, selecting and attending on the contiguous keys; with a budget above
    the context it is dense attention."""
    cache, seqs = make_cache([45, 17, 1, 64], 2, 16, dtype=torch.float64,
                             quest=method == "quest")
    q = torch.randn(4, 8, 16, dtype=torch.float64, device=DEV)
    k, v, lens = cache.contiguous(0, seqs)
    out, sel = R.decode_step(q, cache, 0, seqs, 16, method, sink_pages=1)
    want_sel = R.select_pages(R.score_pages(method, q, k, lens, 8), lens, 8, 2, sink_pages=1)
    assert torch.equal(sel, want_sel) and (sel[0] == 5).any(-1).all()  # newest page kept
    want = R.sparse_attention(q, k, v, lens, want_sel, 8)
    assert torch.allclose(out, want, atol=1e-12)
    dense = R.dense_attention(q, k, v, lens)
    assert not torch.allclose(out[0], dense[0])
    full, none = R.decode_step(q, cache, 0, seqs, 64, method)
    assert none is None and torch.allclose(full, dense, atol=1e-12)
