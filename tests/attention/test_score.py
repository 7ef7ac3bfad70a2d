"""Triton score kernels (UNIQUE, mean-only, Quest) against the reference on the cache's stats."""

import pytest
import torch
from attn_testutil import DEV, make_cache, sizes

from unique_asr.attention import reference as R
from unique_asr.attention.triton.score import quest_scores, unique_scores


def _check(got, ref, lengths, S, sink, atol, rtol):
    for b, L in enumerate(lengths):
        n = -(-L // S)
        g = got[b, :, :n].clone()
        r = ref[b, :, :n].float().clone()
        assert torch.isinf(g[:, n - 1]).all() and (g[:, n - 1] > 0).all()  # newest page forced
        ns = min(sink, n - 1)
        assert (g[:, :ns] == torch.finfo(torch.float32).max).all()
        assert torch.allclose(g[:, ns:n - 1], r[:, ns:n - 1], atol=atol, rtol=rtol)


@pytest.mark.parametrize("G,D,dtype", [(1, 64, torch.float32), (4, 128, torch.bfloat16),
                                       (8, 64, torch.float16), (4, 64, torch.float32)])
@sizes(small={"lengths": [75, 9, 1, 130], "Hkv": 2}, full={"lengths": [8192, 3001, 32768], "Hkv": 8})
def test_unique_and_meanonly_scores(G, D, dtype, size):
    lengths, Hkv = size["lengths"], size["Hkv"]
    cache, seqs = make_cache(lengths, Hkv, D, dtype=dtype)
    pt, lens = cache.batch(seqs)
    q = torch.randn(len(lengths), Hkv * G, D, device=DEV).to(dtype)
    # reference on the cache's own stored statistics, gathered per sequence
    P = pt.shape[1]
    pages = pt.long().clamp_min(0)
    mean = cache.mean[0][pages].permute(0, 2, 1, 3)  # [B, Hkv, P, D]
    std = cache.std[0][pages].permute(0, 2, 1)
    tol = {"atol": 1e-4, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 1e-2}
    for lam, sink, bp, ppp in ((0.5, 0, 128, None), (0.0, 2, 16, 48)):  # 2nd: looping blocks
        got = unique_scores(q, cache.mean[0], cache.std[0], pt, lens, 8, lam=lam,
                            sink_pages=sink, max_pages=P, block_p=bp, pages_per_prog=ppp)
        ref = R.unique_page_scores(q, mean, std, lam)
        _check(got, ref, lengths, 8, sink, **tol)


@pytest.mark.parametrize("G", [1, 4, 8])
@sizes(small={"lengths": [40, 3, 77], "Hkv": 2, "D": 32}, full={"lengths": [8192, 5000], "Hkv": 8, "D": 128})
def test_quest_scores(G, size):
    lengths, Hkv, D = size["lengths"], size["Hkv"], size["D"]
    cache, seqs = make_cache(lengths, Hkv, D, dtype=torch.float32, quest=True)
    pt, lens = cache.batch(seqs)
    q = torch.randn(len(lengths), Hkv * G, D, device=DEV)
    k, _, _ = cache.contiguous(0, seqs)
    ref = R.quest_page_scores(q, *R.quest_page_stats(k, lens, 8))
    got = quest_scores(q, cache.kmin[0], cache.kmax[0], pt, lens, 8, sink_pages=1)
    _check(got, ref, lengths, 8, 1, atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("stats_dtype,mean_dtype", [("fp8", torch.float8_e4m3fn),
                                                    ("int8", torch.int8)])
@pytest.mark.parametrize("G,D,dtype", [(4, 128, torch.bfloat16), (1, 64, torch.float32)])
@sizes(small={"lengths": [75, 9, 130], "Hkv": 2}, full={"lengths": [8192, 3001, 32768], "Hkv": 8})
def test_one_byte_mean_scores(stats_dtype, mean_dtype, G, D, dtype, size):
    """stats_dtype=fp8 / int8: the kernel scores the dequantized means as the reference does."""
    lengths, Hkv = size["lengths"], size["Hkv"]
    cache, seqs = make_cache(lengths, Hkv, D, dtype=dtype, stats_dtype=stats_dtype)
    assert cache.mean.dtype == mean_dtype and cache.mean_scale.dtype == torch.float32
    pt, lens = cache.batch(seqs)
    q = torch.randn(len(lengths), Hkv * G, D, device=DEV).to(dtype)
    pages = pt.long().clamp_min(0)
    mean = cache.page_means(0)[pages].permute(0, 2, 1, 3)
    std = cache.std[0][pages].permute(0, 2, 1)
    tol = {"atol": 1e-4, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 1e-2}
    for lam, sink in ((0.5, 0), (0.0, 1)):
        got = unique_scores(q, cache.mean[0], cache.std[0], pt, lens, 8, lam=lam,
                            sink_pages=sink, max_pages=pt.shape[1],
                            mean_scale=cache.mean_scale[0],
                            mean_center=cache.row_centers(0, seqs))
        _check(got, R.unique_page_scores(q, mean, std, lam), lengths, 8, sink, **tol)
    with pytest.raises(ValueError, match="mean_scale"):
        unique_scores(q, cache.mean[0], cache.std[0], pt, lens, 8)
