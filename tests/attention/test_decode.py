"""Triton paged decode (sparse over selected pages, dense over all) vs the float64 reference."""

import pytest
import torch
from attn_testutil import DEV, make_cache, phys_to_logical, rel_err, sizes

from unique_asr.attention import reference as R
from unique_asr.attention.triton.decode import paged_decode

TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}


def _random_pages(pt, lens, Hkv, k, S=8):
    """k random distinct pages per (sequence, KV head), always including the newest one."""
    B = pt.shape[0]
    out = torch.full((B, Hkv, k), -1, dtype=torch.int32, device=DEV)
    for b in range(B):
        n = -(-int(lens[b]) // S)
        m = min(k, n)
        for h in range(Hkv):
            pick = torch.randperm(n - 1)[: m - 1].tolist() + [n - 1]
            pick = torch.tensor(pick)[torch.randperm(m)]
            out[b, h, :m] = pt[b, pick.to(DEV)]
    return out


@pytest.mark.parametrize("G,D,dtype,splits", [
    (1, 64, torch.float32, None), (4, 128, torch.bfloat16, None), (8, 64, torch.float16, 3),
    (4, 64, torch.float32, 1), (4, 128, torch.float32, 2)])
@sizes(small={"lengths": [75, 9, 1, 130, 16], "Hkv": 2, "k": [1, 4]},
       full={"lengths": [8192, 3001, 32768, 77], "Hkv": 8, "k": [1, 64, 256]})
def test_sparse_and_dense_decode(G, D, dtype, splits, size):
    lengths, Hkv = size["lengths"], size["Hkv"]
    cache, seqs = make_cache(lengths, Hkv, D, dtype=dtype)
    pt, lens = cache.batch(seqs)
    k, v, _ = cache.contiguous(0, seqs)
    B = len(lengths)
    for kp in size["k"]:
        q = torch.randn(B, Hkv * G, D, device=DEV).to(dtype)
        pages = _random_pages(pt, lens, Hkv, kp)
        out = torch.full((B, Hkv * G, D), float("nan"), dtype=dtype, device=DEV)  # poisoned
        paged_decode(q, cache.k[0], cache.v[0], pages, pt, lens, num_splits=splits, out=out)
        ref = R.sparse_attention(q.double(), k.double(), v.double(), lens,
                                 phys_to_logical(pages, pt), 8)
        assert not out.isnan().any()
        assert rel_err(out, ref) <= TOL[dtype], (kp, rel_err(out, ref))
    dense = paged_decode(q, cache.k[0], cache.v[0], pt.unsqueeze(1), pt, lens, num_splits=splits)
    ref = R.dense_attention(q.double(), k.double(), v.double(), lens)
    assert rel_err(dense, ref) <= TOL[dtype]


def test_decode_input_errors():
    cache, seqs = make_cache([20], 2, 16)
    pt, lens = cache.batch(seqs)
    q = torch.randn(1, 4, 16, device=DEV)
    with pytest.raises(ValueError, match="int32"):
        paged_decode(q, cache.k[0], cache.v[0], pt.long().unsqueeze(1), pt, lens)
    with pytest.raises(ValueError, match="head dim"):
        paged_decode(torch.randn(1, 4, 32, device=DEV), cache.k[0], cache.v[0],
                     pt.unsqueeze(1), pt, lens)
