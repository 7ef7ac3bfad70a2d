"""Triton radix top-k against reference.select_pages on the same scores (exact sets)."""

import pytest
import torch
from attn_testutil import DEV, sizes

from unique_asr.attention import reference as R
from unique_asr.attention.triton.topk import topk_pages


def _scores(B, Hkv, P, ties):
    s = torch.randn(B, Hkv, P, device=DEV)
    if ties:  # many exact ties, negative values, zeros and -0.0 too
        s = (s * 2).round() / 2
        s[..., ::7] = -0.0
    return s


def _check(scores, lens, k, block=None, sink=0, two_bits=False, bounds=None):
    B, _Hkv, P = scores.shape
    n = R.num_pages(lens.cpu(), 8)
    for b in range(B):  # the score kernels force the newest page to +inf; do the same here
        scores[b, :, n[b] - 1] = float("inf")
    pt = torch.stack([torch.randperm(P + 5, device=DEV)[:P] for _ in range(B)]).int()
    phys, logical = topk_pages(scores, lens, 8, k, page_table=pt, logical=True, block=block,
                                two_bits=two_bits, bounds=bounds)
    ref = R.select_pages(scores.cpu(), lens.cpu(), 8, k, sink)
    for b in range(B):
        m = min(k, int(n[b]))
        got = logical[b, :, :m].long().cpu().sort(-1).values
        assert torch.equal(got, ref[b, :, :m]), (b, got, ref[b])
        assert (logical[b, :, m:] == -1).all() and (phys[b, :, m:] == -1).all()
        want_phys = pt[b].long().cpu()[logical[b, :, :m].long().cpu()]
        assert torch.equal(phys[b, :, :m].long().cpu(), want_phys)


@pytest.mark.parametrize("ties", [False, True])
@sizes(small={"B": 3, "Hkv": 2, "P": 300, "k": [1, 7, 64]}, full={"B": 32, "Hkv": 8, "P": 16384, "k": [1, 64, 256]})
def test_topk_matches_reference(ties, size):
    B, Hkv, P = size["B"], size["Hkv"], size["P"]
    for k in size["k"]:
        s = _scores(B, Hkv, P, ties)
        # mixed lengths: one full row, one short (<= k pages: dense), one partial page
        lens = torch.tensor([P * 8, max(1, 8 * k - 3), P * 8 - 13][:B] + [P * 4] * (B - 3),
                            dtype=torch.int32, device=DEV)
        _check(s, lens, k)  # library default for the row length
        _check(s, lens, k, bounds=True)  # search started from the bounds' shared prefix
        _check(s, lens, k, bounds=False)  # search from the top bit
        _check(s, lens, k, two_bits=True)


def test_topk_forced_pages_and_chunked_rows():
    B, Hkv, P, k = 2, 2, 200, 9
    s = _scores(B, Hkv, P, ties=True)
    lens = torch.tensor([P * 8 - 3, 100], dtype=torch.int32, device=DEV)
    n = [P, 13]
    for b in range(B):  # what the score kernel writes: newest page +inf, 2 sinks FLT_MAX
        s[b, :, n[b] - 1] = float("inf")
        s[b, :, :2] = torch.finfo(torch.float32).max
    _check(s, lens, k, sink=2)
    _check(s, lens, k, sink=2, two_bits=True)  # two bits per step, packed counts
    _check(s, lens, k, block=64, sink=2)  # rows longer than the block: chunked variant
    _check(_scores(B, Hkv, P, False), lens, 1, block=32)
