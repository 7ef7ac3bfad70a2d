"""PagedKVCache: page tables, allocation, running statistics vs the reference."""

import pytest
import torch
from attn_testutil import DEV, make_cache

from unique_asr.attention import reference as R
from unique_asr.attention.paged_cache import PagedKVCache


@pytest.mark.parametrize("page_size", [8, 4])
def test_stats_after_prefill_and_decode_match_reference(page_size):
    lengths = [37, 8, 1, 20]
    cache, seqs = make_cache(lengths, 2, 16, page_size=page_size, quest=True, layers=2)
    for layer in range(2):
        k, _v, lens = cache.contiguous(layer, seqs)
        assert lens.tolist() == lengths
        mean, std = R.page_stats_varlen(k, lens, page_size)
        kmin, kmax = R.quest_page_stats(k, lens, page_size)
        pt, _ = cache.batch(seqs)
        for b, L in enumerate(lengths):
            n = -(-L // page_size)
            pages = pt[b, :n].long()
            assert (pages >= 0).all() and (pt[b, n:] == -1).all()
            got_m = cache.mean[layer, pages].permute(1, 0, 2)
            assert torch.allclose(got_m, mean[b, :, :n], atol=1e-5)
            # std = sqrt(E|k|^2 - |E k|^2) in float32 carries ~sqrt(eps * |k|^2) ~ 2e-3 of
            # cancellation noise (a one-token page's true std 0 reads up to that on CUDA)
            assert torch.allclose(cache.std[layer, pages].T, std[b, :, :n], atol=3e-3)
            assert torch.equal(cache.kmin[layer, pages].permute(1, 0, 2), kmin[b, :, :n].float())
            assert torch.equal(cache.kmax[layer, pages].permute(1, 0, 2), kmax[b, :, :n].float())


def test_alloc_free_and_errors():
    c = PagedKVCache(1, 2, 16, num_pages=4, max_seqs=2, page_size=8, device=DEV,
                     dtype=torch.float32)
    a = c.add_sequence()
    c.reserve([a], 20)  # 3 pages
    assert c.free_pages == 1
    with pytest.raises(RuntimeError, match="out of pages"):
        b = c.add_sequence()
        c.reserve([b], 9)
    with pytest.raises(ValueError, match="expected"):
        c.reserve([a], 1)
        c.write(0, torch.zeros(2, 2, 16, device=DEV), torch.zeros(2, 2, 16, device=DEV))
    c.free_sequence(a)
    assert c.free_pages == 4
    b2 = c.add_sequence()
    c.reserve([b2], 32)
    x = torch.randn(32, 2, 16, device=DEV)
    c.write(0, x, x)
    k, _, _ = c.contiguous(0, [b2])
    assert torch.equal(k[0].transpose(0, 1), x)  # recycled pages were reset: stats are fresh
    assert torch.allclose(c.mean[0, c.page_table[b2, 0].long()], x[:8].mean(0), atol=1e-6)
    c.free_sequence(b2)
    with pytest.raises(ValueError, match="not allocated"):
        c.reserve([b2], 1)


def test_fp8_means_are_the_means_within_fp8_precision():
    """stats_dtype=fp8 stores each (page, head) mean's offset from its sequence's centre (the
    mean of its prefill keys) as e4m3 times a float32 scale: dequantized, every entry is within
    e4m3's half-ulp (2^-4 relative to the offset) of the float32 mean, and the scale maps the
    row's largest offset to 448."""
    from unique_asr.attention.paged_cache import QUANT

    FP8_MAX = QUANT["fp8"][1]

    gen = torch.Generator(device=DEV).manual_seed(3)
    ref, seqs = make_cache([70, 13], 2, 64, gen=gen)
    gen = torch.Generator(device=DEV).manual_seed(3)
    c8, _ = make_cache([70, 13], 2, 64, gen=gen, stats_dtype="fp8")
    pt, _ = ref.batch(seqs)
    used = pt[pt >= 0].long()
    m32 = (ref.ksum[0] / ref.page_count.float().clamp_min(1)[:, None, None])[used]
    m8 = c8.page_means(0)[used]
    for s, L in zip(seqs, [70, 13]):  # the centre: the mean of the prefill (all but 3 tokens)
        k, _, _ = ref.contiguous(0, [s])
        torch.testing.assert_close(c8.center[0, s], k[0, :, :L - 3].float().mean(1))
    off = m32 - c8.center[0, c8.page_seq[used]]
    big = off.abs().amax(-1, keepdim=True)
    assert ((m8 - m32).abs() <= off.abs() * 2 ** -4 + big * 2 ** -9 + 1e-6).all()
    assert (c8.mean[0][used].float().abs().amax(-1) == FP8_MAX).all()
    torch.testing.assert_close(c8.std[0][used], ref.std[0][used])
    with pytest.raises(ValueError, match="stats_dtype"):
        PagedKVCache(1, 1, 8, 4, 1, stats_dtype="fp16")


def test_int8_means_are_the_means_within_half_a_step():
    """stats_dtype=int8 stores each (page, head) mean's offset from its sequence's centre as a
    symmetric integer times a float32 scale (largest |offset| -> 127): dequantized, every entry
    is within half a grid step (scale / 2) of the float32 mean, which for these near-Gaussian
    offsets is tighter than e4m3's relative half-ulp on most entries."""
    gen = torch.Generator(device=DEV).manual_seed(3)
    ref, seqs = make_cache([70, 13], 2, 64, gen=gen)
    gen = torch.Generator(device=DEV).manual_seed(3)
    ci, _ = make_cache([70, 13], 2, 64, gen=gen, stats_dtype="int8")
    gen = torch.Generator(device=DEV).manual_seed(3)
    c8, _ = make_cache([70, 13], 2, 64, gen=gen, stats_dtype="fp8")
    pt, _ = ref.batch(seqs)
    used = pt[pt >= 0].long()
    m32 = (ref.ksum[0] / ref.page_count.float().clamp_min(1)[:, None, None])[used]
    assert ci.mean.dtype == torch.int8
    assert (ci.mean[0][used].abs().amax(-1) == 127).all()
    step = ci.mean_scale[0][used][..., None]
    err_i = (ci.page_means(0)[used] - m32).abs()
    assert (err_i <= step / 2 + 1e-6).all()
    assert err_i.mean() < (c8.page_means(0)[used] - m32).abs().mean()
    torch.testing.assert_close(ci.std[0][used], ref.std[0][used])


@pytest.mark.parametrize("stats_dtype", ["bf16", "fp8", "int8"])
def test_split_decode_append_equals_reserve(stats_dtype):
    """plan_decode (host) + apply_decode (device) + write leave the cache exactly as reserve(seqs,
    1) + write: page table, lengths, page counts, K/V and every page statistic, over steps that
    cross page boundaries, on pages recycled from a freed sequence (stale statistics)."""
    def build():
        # the PyTorch write on both sides: exact equality tests the split bookkeeping; the fused
        # write has its own test against it (test_fused_decode_write_equals_torch_write)
        c = PagedKVCache(2, 2, 16, num_pages=24, max_seqs=4, page_size=4, device=DEV,
                         dtype=torch.float32, quest=True, stats_dtype=stats_dtype,
                         write_impl="torch")
        g = torch.Generator(device=DEV).manual_seed(0)
        seqs = [c.add_sequence() for _ in range(4)]
        for s, n in zip(seqs, [6, 3, 9, 4]):
            c.reserve([s], n)
            for layer in range(2):
                c.write(layer, torch.randn(n, 2, 16, device=DEV, generator=g),
                        torch.randn(n, 2, 16, device=DEV, generator=g))
        c.free_sequence(seqs[1])  # its pages, statistics and all, go back to the pool
        return c, [seqs[2], seqs[0], seqs[3]], g

    eager, seqs, g = build()
    split, _, _ = build()
    for _ in range(6):
        k = torch.randn(2, 3, 2, 16, device=DEV, generator=g)
        v = torch.randn(2, 3, 2, 16, device=DEV, generator=g)
        eager.reserve(seqs, 1)
        taken = split.plan_decode(seqs)
        split.apply_decode(torch.tensor(seqs, device=DEV), torch.tensor(taken, device=DEV))
        for layer in range(2):
            eager.write(layer, k[layer], v[layer])
            split.write(layer, k[layer], v[layer])
    lengths = [split.seq_length(s) for s in seqs]
    assert lengths == [eager.seq_length(s) for s in seqs] == [15, 12, 10]
    assert split.free_pages == eager.free_pages
    names = split.page_stat_names + ["page_table", "lengths", "page_count"]
    names += ["center", "page_seq"] if stats_dtype != "bf16" else []
    for name in names:
        a, b = getattr(eager, name), getattr(split, name)
        if name in split.page_stat_names:  # pages in use (free ones keep stale values)
            used = eager.page_table[eager.page_table >= 0].long()
            a, b = a[:, used], b[:, used]
        assert torch.equal(a.float(), b.float()), name
    with pytest.raises(ValueError, match="twice"):
        split.plan_decode([seqs[0], seqs[0]])


@pytest.mark.parametrize("dtype,D,quest,stats", [
    (torch.float32, 16, True, "bf16"), (torch.bfloat16, 24, False, "bf16"),
    (torch.bfloat16, 64, True, "bf16"), (torch.bfloat16, 24, False, "int8"),
    (torch.bfloat16, 64, True, "int8")])
def test_fused_decode_write_equals_torch_write(dtype, D, quest, stats):
    """The one-launch decode write (triton/cache_write.py) leaves K/V, the running sums, means
    (int8 ones within one quantisation step, and their scales), stds and Quest's min/max as
    the PyTorch write does, over decode steps that start pages, on pages recycled from a freed
    sequence (stale statistics), for a head dim that is not a power of two."""
    def build(write_impl):
        c = PagedKVCache(2, 2, D, num_pages=24, max_seqs=4, page_size=4, device=DEV,
                         dtype=dtype, quest=quest, stats_dtype=stats, write_impl=write_impl)
        g = torch.Generator(device=DEV).manual_seed(1)
        seqs = [c.add_sequence() for _ in range(4)]
        for s, n in zip(seqs, [6, 3, 9, 4]):
            c.reserve([s], n)
            for layer in range(2):
                c.write(layer, torch.randn(n, 2, D, device=DEV, generator=g).to(dtype),
                        torch.randn(n, 2, D, device=DEV, generator=g).to(dtype))
        c.free_sequence(seqs[1])
        return c, [seqs[2], seqs[0], seqs[3]], g

    ref, seqs, g = build("torch")
    fused, _, _ = build("triton")
    assert fused.fused_write and not ref.fused_write
    assert not PagedKVCache(1, 1, 8, 4, 1, stats_dtype="fp8", write_impl="triton").fused_write
    for _ in range(6):
        k = (torch.randn(2, 3, 2, D, device=DEV, generator=g) + 2.0).to(dtype)
        v = torch.randn(2, 3, 2, D, device=DEV, generator=g).to(dtype)
        for c in (ref, fused):
            taken = c.plan_decode(seqs)
            c.apply_decode(torch.tensor(seqs, device=DEV), torch.tensor(taken, device=DEV))
            for layer in range(2):
                c.write(layer, k[layer], v[layer])
    used = ref.page_table[ref.page_table >= 0].long()
    assert torch.equal(fused.page_table, ref.page_table)
    for name in ref.page_stat_names:
        a, b = getattr(ref, name)[:, used], getattr(fused, name)[:, used]
        if name in ("k", "v", "kmin", "kmax"):
            assert torch.equal(a, b), name
        elif name == "mean" and stats == "int8":  # codes at most one step apart, mostly equal
            assert (a.float() - b.float()).abs().max() <= 1
            assert (a == b).float().mean() > 0.98
        else:  # sums of squares add in another order
            tol = 1e-5 if name != "mean" or dtype == torch.float32 else 1e-2
            torch.testing.assert_close(b.float(), a.float(), atol=tol, rtol=tol, msg=name)


def test_write_impl_is_checked():
    with pytest.raises(ValueError, match="write_impl"):
        PagedKVCache(1, 1, 8, 4, 1, write_impl="cuda")
