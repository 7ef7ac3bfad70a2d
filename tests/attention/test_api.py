"""api.unique_decode: Triton path vs reference path, dense equivalence, input errors;
SparseConfig validation."""

import pytest
import torch
from attn_testutil import DEV, make_cache, phys_to_logical, rel_err, sizes

from unique_asr.attention import reference as R
from unique_asr.attention.api import METHODS, SparseConfig, StepRows, decode, unique_decode


@pytest.mark.parametrize("method", ["unique", "meanonly", "quest", "oracle"])
@sizes(small={"lengths": [75, 9, 130], "Hkv": 2, "G": 4, "D": 32, "budget": 32},
       full={"lengths": [16384, 3001, 8192], "Hkv": 8, "G": 4, "D": 128, "budget": 512})
def test_triton_step_matches_reference(method, size):
    lengths, Hkv, G, D, budget = (size[x] for x in ("lengths", "Hkv", "G", "D", "budget"))
    cache, seqs = make_cache(lengths, Hkv, D, dtype=torch.float32, quest=method == "quest")
    q = torch.randn(len(lengths), Hkv * G, D, device=DEV)
    out, pages = unique_decode(q, cache, 0, budget, method, seqs, sink_pages=1, impl="triton",
                               return_pages=True)
    pt, lens = cache.batch(seqs)
    k, v, _ = cache.contiguous(0, seqs)
    logical = phys_to_logical(pages, pt)
    kp = budget // 8
    # the chosen pages are a valid top-k: each chosen score >= the k-th best (up to rounding)
    scores = R.score_pages(method, q.double(), k.double(), lens, 8)
    ref_sel = R.select_pages(scores, lens, 8, kp, sink_pages=1)
    for b, L in enumerate(lengths):
        n = -(-L // 8)
        m = min(kp, n)
        got = logical[b, :, :m]
        assert (got >= 0).all() and (got == n - 1).any(-1).all() and (got == 0).any(-1).all()
        for h in range(Hkv):
            s = scores[b, h]
            kth = s[ref_sel[b, h, :m]].min()
            assert (s[got[h]] >= kth - 1e-4 * (1 + kth.abs())).all()
            same = set(got[h].tolist()) == set(ref_sel[b, h, :m].tolist())
            assert same or method in ("unique", "meanonly")  # stats differ only by rounding
    ref = R.sparse_attention(q.double(), k.double(), v.double(), lens, logical, 8)
    assert rel_err(out, ref) <= 1e-5


@pytest.mark.parametrize("stats_dtype", ["bf16", "fp8", "int8"])
@sizes(small={"lengths": [40, 7, 1], "Hkv": 2, "G": 4, "D": 64},
       full={"lengths": [4096, 999, 1], "Hkv": 8, "G": 4, "D": 128})
def test_budget_above_context_is_dense_bf16(stats_dtype, size):
    lengths, Hkv, G, D = (size[x] for x in ("lengths", "Hkv", "G", "D"))
    cache, seqs = make_cache(lengths, Hkv, D, dtype=torch.bfloat16, stats_dtype=stats_dtype)
    q = torch.randn(len(lengths), Hkv * G, D, device=DEV).bfloat16()
    budget = max(lengths) + 8
    out = unique_decode(q, cache, 0, budget, "unique", seqs, impl="triton")
    dense = unique_decode(q, cache, 0, budget, "dense", seqs, impl="triton")
    k, v, lens = cache.contiguous(0, seqs)
    ref = R.dense_attention(q.double(), k.double(), v.double(), lens)
    assert torch.equal(out, dense) and rel_err(out, ref) <= 1e-2
    ref_be = unique_decode(q.double(), cache, 0, budget, "unique", seqs, impl="reference")
    assert rel_err(ref_be, ref) <= 1e-12


def test_input_errors():
    cache, _seqs = make_cache([20, 9], 2, 16)
    q = torch.randn(2, 4, 16, device=DEV)
    with pytest.raises(ValueError, match="method"):
        unique_decode(q, cache, 0, 64, "topk")
    with pytest.raises(ValueError, match="rows"):
        unique_decode(q[:1], cache, 0, 64)
    with pytest.raises(ValueError, match="budget"):
        unique_decode(q, cache, 0, 4)
    with pytest.raises(ValueError, match="quest=True"):
        unique_decode(q, cache, 0, 64, "quest")
    with pytest.raises(ValueError, match="KV heads"):
        unique_decode(torch.randn(2, 3, 16, device=DEV), cache, 0, 64)
    with pytest.raises(ValueError, match="layer"):
        unique_decode(q, cache, 1, 64)


def test_reference_step_matches_triton_step():
    """reference.decode_step (impl=reference) and the Triton path select the same pages and
    give the same output on a random cache (float32, scores well separated)."""
    cache, seqs = make_cache([75, 9, 130], 2, 32, dtype=torch.float32)
    q = torch.randn(3, 8, 32, device=DEV)
    sc = SparseConfig(method="unique", budget=32, sink_pages=1)
    ref = decode(q, cache, 0, SparseConfig(**{**sc.__dict__, "impl": "reference"}), seqs)
    tri = decode(q, cache, 0, SparseConfig(**{**sc.__dict__, "impl": "triton"}), seqs)
    assert rel_err(tri, ref) <= 1e-5


def test_sparse_config_validation_names_key_and_values():
    assert SparseConfig().validate().method == "dense" and METHODS[0] == "dense"
    with pytest.raises(ValueError, match=r"decode\.sparse\.method='topk'.*dense, unique, quest"):
        SparseConfig(method="topk").validate()
    with pytest.raises(ValueError, match=r"decode\.sparse\.impl.*auto, triton, reference"):
        SparseConfig(impl="torch").validate()
    with pytest.raises(ValueError, match=r"decode\.sparse\.budget=12.*multiple"):
        SparseConfig(method="unique", budget=12).validate()
    with pytest.raises(ValueError, match=r"decode\.sparse\.budget=0"):
        SparseConfig(method="unique", budget=0).validate()
    with pytest.raises(ValueError, match=r"decode\.sparse\.sink_pages"):
        SparseConfig(sink_pages=-1).validate()
    with pytest.raises(ValueError, match=r"decode\.sparse\.stats_dtype='fp16'.*bf16, fp8, int8"):
        SparseConfig(stats_dtype="fp16").validate()


@pytest.mark.parametrize("method", ["unique", "quest"])
def test_prepared_rows_give_the_same_step(method):
    """A step over StepRows (the rows' page-table rows, lengths and slots prepared on the device,
    a fixed page bound: what a CUDA graph replays) selects the same pages and gives the same
    output as the step that reads the cache's host lengths, rows out of slot order."""
    cache, seqs = make_cache([75, 9, 130], 2, 32, quest=method == "quest")
    order = [seqs[2], seqs[0], seqs[1]]
    q = torch.randn(3, 8, 32, device=DEV)
    index = torch.tensor(order, device=DEV)
    pt, lens = cache.batch(order)
    rows = StepRows(order, index, pt, lens, cache.max_pages_per_seq)
    assert pt.shape[1] > -(-130 // 8)  # the bound is above the longest row's pages
    want, want_pages = unique_decode(q, cache, 0, 32, method, order, impl="triton",
                                     return_pages=True)
    got, got_pages = unique_decode(q, cache, 0, 32, method, impl="triton", rows=rows,
                                   return_pages=True)
    assert torch.equal(got_pages.sort(-1).values, want_pages.sort(-1).values)
    assert rel_err(got, want) <= 1e-6


@pytest.mark.parametrize("stats_dtype", ["fp8", "int8"])
def test_one_byte_rows_out_of_slot_order_use_their_own_centres(stats_dtype):
    """One-byte page means are offsets from each sequence's centre; a batch whose rows are not in
    slot order (a reordered or refilled decode batch) scores each row with its own centre, so
    the Triton step selects what the reference selects."""
    cache, seqs = make_cache([75, 40, 130], 2, 32, stats_dtype=stats_dtype,
                             gen=torch.Generator(device=DEV).manual_seed(5))
    order = seqs[::-1]
    q = torch.randn(3, 8, 32, device=DEV, generator=torch.Generator(device=DEV).manual_seed(6))
    _, pages = unique_decode(q, cache, 0, 32, "unique", order, impl="triton", return_pages=True)
    _, ref = unique_decode(q.double(), cache, 0, 32, "unique", order, impl="reference",
                           return_pages=True)
    logical = phys_to_logical(pages, cache.batch(order)[0])
    assert torch.equal(logical.sort(-1).values, ref.sort(-1).values)
