"""Shared helpers for the attention tests: device choice and random paged caches."""

from __future__ import annotations

import pytest
import torch

from unique_asr.attention.paged_cache import PagedKVCache

CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not CUDA, reason="full-size run needs CUDA")


def sizes(small, full):
    """Parametrize a test over a small size (always, CPU interpreter or GPU) and a full size
    (marked gpu, skipped without CUDA)."""
    return pytest.mark.parametrize(
        "size", [pytest.param(small, id="small"),
                 pytest.param(full, id="full", marks=[gpu, needs_cuda])])


def make_cache(lengths, num_kv_heads, head_dim, page_size=8, dtype=torch.float32, quest=False,
               decode_steps=3, gen=None, layers=1, stats_dtype="bf16"):
    """A cache filled with random keys/values: each sequence gets a prefill of all but the last
    `decode_steps` tokens, then single-token decode appends (so physical pages interleave).
    Returns the cache and the sequence slots."""
    n_pages = sum(-(-L // page_size) for L in lengths) + 3
    cache = PagedKVCache(layers, num_kv_heads, head_dim, n_pages, len(lengths),
                         page_size=page_size, dtype=dtype, device=DEV, quest=quest,
                         stats_dtype=stats_dtype)
    gen = gen or torch.Generator(device=DEV).manual_seed(torch.seed() % 2**31)
    seqs = [cache.add_sequence() for _ in lengths]

    def rnd(n):
        x = torch.randn(n, num_kv_heads, head_dim, device=DEV, generator=gen)
        # per-dimension offsets make page means differ, like real post-RoPE keys
        return x + 0.5 * torch.randn(1, 1, head_dim, device=DEV, generator=gen)

    for s, L in zip(seqs, lengths):
        pre = max(1, L - decode_steps)
        cache.reserve([s], pre)
        for layer in range(layers):
            cache.write(layer, rnd(pre), rnd(pre))
    while True:
        active = [s for s, L in zip(seqs, lengths) if cache.seq_length(s) < L]
        if not active:
            break
        cache.reserve(active, 1)
        for layer in range(layers):
            cache.write(layer, rnd(len(active)), rnd(len(active)))
    return cache, seqs


def phys_to_logical(pages, page_table):
    """Map physical page ids [B, Hkv, k] to logical indices through page_table [B, P]."""
    B, Hkv, k = pages.shape
    out = torch.full((B, Hkv, k), -1, dtype=torch.long, device=pages.device)
    for b in range(B):
        inv = {int(p): i for i, p in enumerate(page_table[b].tolist()) if p >= 0}
        for h in range(Hkv):
            out[b, h] = torch.tensor([inv.get(int(p), -1) if p >= 0 else -1
                                      for p in pages[b, h].tolist()])
    return out


def rel_err(x, ref):
    return ((x.double() - ref.double()).norm() / ref.double().norm()).item()
