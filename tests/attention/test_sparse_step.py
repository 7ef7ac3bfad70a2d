"""api.sparse_step (the Triton step unique_decode runs): batch split over streams, PDL off and
CUDA-graph replay all give bitwise the plain step's output; the output matches the reference."""

import torch
from attn_testutil import DEV, make_cache, phys_to_logical, rel_err, sizes

from unique_asr.attention import reference as R
from unique_asr.attention.api import sparse_step, unique_decode


@sizes(small={"lengths": [75, 9, 130, 64], "Hkv": 2, "G": 4, "D": 32, "budget": 32},
       full={"lengths": [16384] * 6 + [3001, 8192], "Hkv": 8, "G": 4, "D": 128, "budget": 512})
def test_sparse_step_streams_pdl_and_graph_same_output(size):
    """The batch split over streams, launching without PDL and replaying a captured CUDA graph
    all give bitwise the output and pages of the plain step (rows are independent)."""
    from unique_asr.attention.triton import score as score_mod

    lengths, Hkv, G, D, budget = (size[x] for x in ("lengths", "Hkv", "G", "D", "budget"))
    cache, seqs = make_cache(lengths, Hkv, D, dtype=torch.bfloat16)
    q = torch.randn(len(lengths), Hkv * G, D, device=DEV).bfloat16()
    batch = cache.batch(seqs)
    P = -(-max(lengths) // 8)
    out1, pages1 = unique_decode(q, cache, 0, budget, "unique", seqs, impl="triton",
                                 return_pages=True)
    k, v, lens = cache.contiguous(0, seqs)
    ref = R.sparse_attention(q.double(), k.double(), v.double(), lens,
                             phys_to_logical(pages1, batch[0]), 8)
    assert rel_err(out1, ref) <= 1e-2
    out2, pages2 = sparse_step(q, cache, 0, budget, batch, P, streams=2)
    assert torch.equal(out1, out2) and torch.equal(pages1, pages2)
    saved = score_mod.PDL
    try:
        score_mod.PDL = False
        out3, pages3 = sparse_step(q, cache, 0, budget, batch, P)
    finally:
        score_mod.PDL = saved
    assert torch.equal(out1, out3) and torch.equal(pages1, pages3)
    if DEV == "cuda":
        for streams in (1, 2):
            qs = q.clone()
            g = torch.cuda.CUDAGraph()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                sparse_step(qs, cache, 0, budget, batch, P, streams=streams)
            torch.cuda.current_stream().wait_stream(s)
            with torch.cuda.graph(g):
                og, pg = sparse_step(qs, cache, 0, budget, batch, P, streams=streams)
            q2 = torch.randn_like(q)
            qs.copy_(q2)
            og.fill_(float("nan"))
            g.replay()
            torch.cuda.synchronize()
            want, want_p = sparse_step(q2, cache, 0, budget, batch, P)
            assert torch.equal(og, want) and torch.equal(pg, want_p), streams
