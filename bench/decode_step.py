"""Kernel benchmark of one UNIQUE decoding step against dense baselines, in one process.

Reproduces the paper's conditions (docs/method.md): 32 query / 8 KV heads, D 128, page 8, budget 512
tokens, bf16; batch 80 at 8K/16K/32K and batch 16 at 64K/128K. Per setting it times (medians of
triton.testing.do_bench, which flushes the L2 before each call) the score, top-k and attention
stages, the whole step eagerly and as one CUDA graph, our dense paged decode, FlashInfer's dense
paged decode (page 8, HND, the faster of its two decode paths) and torch SDPA on contiguous K/V,
and the byte floor: page means (bf16) + stds (fp32) + the selected K/V pages, over the copy
bandwidth measured in the same run. Also the paper's Table 8 grid (score kernel, batch 32,
8K..128K) and Table 9 grid (top-k, 256 rows, k=64, 1K..16K pages, against torch.topk).

Every figure is appended as one JSON line to --out (bench = decode_step | score | topk) and a
plot of speedup against context is written beside it (plot.py).

    python3 bench/decode_step.py --out bench/results/decode_step.jsonl
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import triton
from triton.testing import do_bench

from unique_asr.attention import reference as R
from unique_asr.attention.api import sparse_step
from unique_asr.attention.paged_cache import PagedKVCache
from unique_asr.attention.triton import score as score_mod
from unique_asr.attention.triton import topk as topk_mod
from unique_asr.attention.triton.decode import paged_decode
from unique_asr.attention.triton.score import unique_scores
from unique_asr.attention.triton.topk import topk_pages

H, HKV, D, S = 32, 8, 128, 8
DEV = "cuda"  # "cpu" only for a smoke run of the script under TRITON_INTERPRET=1 (--smoke)


def med_us(fn, rep=100):
    if DEV == "cpu":  # smoke run: one call, wall clock (numbers meaningless)
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e6
    return do_bench(fn, warmup=25, rep=rep, return_mode="median") * 1e3


def env_info() -> dict:
    try:
        import flashinfer
        fi = flashinfer.__version__
    except Exception as e:  # noqa: BLE001 - report why the baseline is missing
        fi = f"unavailable: {e!r}"[:120]
    return {"gpu": torch.cuda.get_device_name() if DEV == "cuda" else "cpu", "torch": torch.__version__,
            "triton": triton.__version__, "flashinfer": fi}


def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus written."""
    n = 512 * 2**20 if DEV == "cuda" else 2**20
    x = torch.randn(n, device=DEV, dtype=torch.bfloat16)  # 1 GiB on the GPU
    y = torch.empty_like(x)
    t = med_us(lambda: y.copy_(x), rep=100) * 1e-6
    return 2 * n * 2 / t


def build_cache(B: int, ctx: int, gen: torch.Generator,
                stats_dtype: str = "bf16") -> tuple[PagedKVCache, list[int]]:
    """One-layer bf16 cache of B sequences of ctx random tokens, filled through reserve/write
    (post-RoPE-like keys: unit noise plus a per-dimension offset)."""
    n_pages = B * (-(-ctx // S))
    cache = PagedKVCache(1, HKV, D, n_pages, B, page_size=S, dtype=torch.bfloat16,
                         device=DEV, stats_dtype=stats_dtype)
    seqs = [cache.add_sequence() for _ in range(B)]
    bias = torch.randn(1, HKV, D, device=DEV, generator=gen)
    for s in seqs:
        cache.reserve([s], ctx)
        k = torch.randn(ctx, HKV, D, device=DEV, generator=gen) + bias
        v = torch.randn(ctx, HKV, D, device=DEV, generator=gen)
        cache.write(0, k, v)
    return cache, seqs


def flashinfer_dense(q, cache, pt, lens):
    """Fastest of FlashInfer's two decode paths; returns (us, out) or (None, reason)."""
    try:
        import flashinfer
    except Exception as e:  # noqa: BLE001
        return None, None, {"import": repr(e)[:200]}
    B = q.shape[0]
    n = (lens.long() + S - 1) // S
    indptr = torch.zeros(B + 1, dtype=torch.int32, device=DEV)
    indptr[1:] = torch.cumsum(n, 0).int()
    idx = torch.cat([pt[b, : n[b]] for b in range(B)]).int()
    last = (lens.long() - (n - 1) * S).int()
    ws = torch.empty(256 * 2**20, dtype=torch.uint8, device=DEV)
    best, out, notes = None, None, {}
    for tc in (False, True):
        try:
            w = flashinfer.BatchDecodeWithPagedKVCacheWrapper(ws, "HND", use_tensor_cores=tc)
            w.plan(indptr, idx, last, H, HKV, D, S, q_data_type=torch.bfloat16,
                   kv_data_type=torch.bfloat16)
            o = w.run(q, (cache.k[0], cache.v[0]))
            t = med_us(lambda w=w: w.run(q, (cache.k[0], cache.v[0])))
            notes[f"tensor_cores={tc}"] = round(t, 2)
            if best is None or t < best:
                best, out = t, o
        except Exception as e:  # noqa: BLE001
            notes[f"tensor_cores={tc}"] = repr(e)[:200]
    return (best, out, notes) if best is not None else (None, None, notes)


def sdpa_dense(q, cache, pt, lens, ctx):
    B = q.shape[0]
    P = -(-ctx // S)
    pages = pt[:, :P].long()
    kc = cache.k[0][pages].permute(0, 2, 1, 3, 4).reshape(B, HKV, P * S, D)[:, :, :ctx]
    vc = cache.v[0][pages].permute(0, 2, 1, 3, 4).reshape(B, HKV, P * S, D)[:, :, :ctx]
    kc, vc = kc.contiguous(), vc.contiguous()
    q4 = q[:, :, None, :]
    f = torch.nn.functional.scaled_dot_product_attention
    o = f(q4, kc, vc, enable_gqa=True)
    t = med_us(lambda: f(q4, kc, vc, enable_gqa=True))
    return t, o[:, :, 0]


SCORE_CFGS = [{"block_p": bp, "num_warps": w, "pages_per_prog": ppp, "num_stages": ns}
              for bp in (64, 128) for w in (4, 8) for ppp in (128, 512, 2048) for ns in (2, 3)
              if not (ppp == 128 and ns == 3)]
TOPK_CFGS = [{"num_warps": w, "two_bits": tb} for w in (4, 8, 16) for tb in (True, False)]
# attention sweep around the library default (num_splits auto = 1 at batch 80, block_pg 4,
# 4 warps, 4 stages: ~211 registers, 2 programs per SM): register caps (no spills at 168 on
# sm_90), smaller tiles (128 regs at block_pg 2), 2 warps, 2 splits with the merge kernel
ATTN_CFGS = [dict(zip(("num_splits", "block_pg", "num_warps", "num_stages", "maxnreg"), c))
             for c in ((1, 4, 4, 4, None), (1, 4, 4, 4, 168), (1, 4, 4, 4, 128),
                       (1, 2, 4, 3, None), (1, 2, 2, 3, None), (1, 4, 2, 3, None),
                       (1, 8, 4, 2, None), (2, 2, 4, 3, None), (2, 4, 4, 4, 168),
                       (2, 8, 4, 2, None), (2, 2, 2, 3, None), (1, 2, 4, 4, None))]


def best_of(run, cfgs):
    """Time run(cfg) for each cfg; return (best cfg, its median us, {cfg: us})."""
    times = {}
    for c in cfgs:
        try:
            times[json.dumps(c)] = med_us(lambda c=c: run(c), rep=60)
        except Exception as e:  # noqa: BLE001 - a config that does not compile is skipped
            print(f"config {c} failed: {e!r}"[:200], flush=True)
    best = min(times, key=times.get)
    return json.loads(best), times[best], {k: round(v, 2) for k, v in times.items()}


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


# whole-step variants, each one CUDA graph. "lib" is what api.unique_decode runs by default
# (single stream, PDL on Hopper) and is the headline figure; the others are api.sparse_step
# options. Each: (name, streams, module overrides {(module, attribute): value}, set for the run).
# lib_nobounds: top-k searching from the top bit (the run-6 top-k; no register caps).
# lib_bounds_all: the bounds for every row length (4K-page rows: 8 warps capped at 128
# registers). lib_tk_occ: also 4K-page rows on 4 warps capped at 128 (4 per SM instead of 2).
# The 2-stream variant: EXTRA_VARIANTS (--all-variants).
_ALL = {(topk_mod, "BOUNDS_MAX_BLOCK"): topk_mod.MAX_BLOCK}
STEP_VARIANTS = (
    ("lib", 1, {}),
    ("lib_nopdl", 1, {(score_mod, "PDL"): False}),
    ("lib_nobounds", 1, {(topk_mod, "BOUNDS_MAX_BLOCK"): 0,
                                (topk_mod, "MAXNREG"): {}}),
    ("lib_bounds_all", 1, {**_ALL, (topk_mod, "MAXNREG"): {(2048, 4): 96,
                                                                   (4096, 8): 128}}),
    ("lib_tk_occ", 1, {**_ALL, (topk_mod, "WARPS"): {4096: 4},
                              (topk_mod, "MAXNREG"): {(2048, 4): 96, (4096, 4): 128}}),
)
EXTRA_VARIANTS = (("streams2", 2, {}),)


def check_step(q, cache, pt, out, sel, P, kp):
    """The step's output against the float64 reference on its own selection, and the share of
    its selected pages that the reference selection also picks (first and last sequence)."""
    if DEV == "cuda":
        torch.cuda.synchronize()
    chk = [0, q.shape[0] - 1]
    kk, vv, ll = cache.contiguous(0, chk)
    sel_l = torch.stack([torch.searchsorted(pt[b, :P].long().contiguous(),
                                            sel[b].long().clamp_min(0)) for b in chk])
    ref = R.sparse_attention(q[chk].double(), kk.double(), vv.double(), ll, sel_l, S)
    mean, std = cache.page_means(0), cache.std[0]
    pages = pt[chk, :P].long()

    def selection(m):
        return R.select_pages(R.unique_page_scores(
            q[chk], m[pages].permute(0, 2, 1, 3), std[pages].permute(0, 2, 1)), ll, S, kp)

    ref_sel = selection(mean)
    match = (sel_l.sort(-1).values == ref_sel).float().mean().item()
    if cache.mean_scale is None:
        return rel(out[chk], ref), match, None
    # one-byte means: the share of the pages that bf16 means (the float32 means rounded) select too
    bf16 = (cache.ksum[0] / cache.page_count.float().clamp_min(1)[:, None, None]).bfloat16()
    sel16 = selection(bf16)
    agree = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in
                zip(ref_sel.flatten(0, 1), sel16.flatten(0, 1))) / sel16.numel()
    return rel(out[chk], ref), match, agree


def time_step_variants(variants, step, out, sel):
    """CUDA-graph time of step(streams) under each variant's module settings, and whether its
    output is bitwise the default's: ({name: us}, {name: equal or the error})."""
    step_us, step_diff = {}, {}
    for name, streams, over in variants:
        saved = {k: getattr(*k) for k in over}
        for (mod, attr), val in over.items():
            setattr(mod, attr, val)
        try:
            step(streams)  # eager
            t, (o, p) = graph_us(lambda st=streams: step(st))
            step_us[name] = round(t, 2)
            step_diff[name] = bool(torch.equal(o, out) and torch.equal(p, sel))
        except Exception as e:  # noqa: BLE001 - record why a variant could not run
            step_us[name] = None
            step_diff[name] = repr(e)[:200]
        finally:
            for (mod, attr), val in saved.items():
                setattr(mod, attr, val)
    return step_us, step_diff


def bench_step(B, ctx, budget, bw, info, gen, log, fast=False, all_variants=False,
               stats_dtype="bf16"):
    cache, seqs = build_cache(B, ctx, gen, stats_dtype)
    pt, lens = cache.batch(seqs)
    batch = (pt, lens)
    P = -(-ctx // S)
    kp = budget // S
    q = torch.randn(B, H, D, device=DEV, generator=gen).bfloat16()
    mean, std = cache.mean[0], cache.std[0]
    scale = None if cache.mean_scale is None else cache.mean_scale[0]
    center = cache.row_centers(0, seqs)

    # the library's step (api.sparse_step = what unique_decode runs), checked before timing
    out, sel = sparse_step(q, cache, 0, budget, batch, P)
    err_sparse, overlap, agree_bf16 = check_step(q, cache, pt, out, sel, P, kp)

    # stages alone with the library defaults (L2 flushed before each call)
    scores = torch.empty(B, HKV, P, device=DEV)
    sel2 = torch.empty(B, HKV, kp, device=DEV, dtype=torch.int32)
    out2 = torch.empty(B, H, D, device=DEV, dtype=torch.bfloat16)
    t_sc = med_us(lambda: unique_scores(q, mean, std, pt, lens, S, max_pages=P, out=scores,
                                        mean_scale=scale, mean_center=center))
    t_tk = med_us(lambda: topk_pages(scores, lens, S, kp, page_table=pt, out=sel2))
    t_at = med_us(lambda: paged_decode(q, cache.k[0], cache.v[0], sel2, pt, lens, out=out2))
    at_cfg, at_all, t_at_best = None, {}, None
    sc_cfg, sc_all, t_sc_best = None, {}, None
    if not fast:
        at_cfg, t_at_best, at_all = best_of(lambda c: paged_decode(
            q, cache.k[0], cache.v[0], sel2, pt, lens, out=out2, **c), ATTN_CFGS)
        # the score kernel's tiling around its defaults, on this cache's means (bf16, fp8 or int8)
        sc_cfg, t_sc_best, sc_all = best_of(lambda c: unique_scores(
            q, mean, std, pt, lens, S, max_pages=P, out=scores, mean_scale=scale,
            mean_center=center, **c), SCORE_CFGS)
        want = unique_scores(q, mean, std, pt, lens, S, max_pages=P, mean_scale=scale,
                             mean_center=center)
        got = unique_scores(q, mean, std, pt, lens, S, max_pages=P, mean_scale=scale,
                            mean_center=center, **sc_cfg)
        sc_cfg = dict(sc_cfg, bitwise_equal_to_default=bool(torch.equal(got, want)))

    t_eager = med_us(lambda: sparse_step(q, cache, 0, budget, batch, P))
    variants = STEP_VARIANTS + (EXTRA_VARIANTS if all_variants else ())
    step_us, step_diff = time_step_variants(
        variants if DEV == "cuda" else (),
        lambda streams: sparse_step(q, cache, 0, budget, batch, P, streams=streams), out, sel)
    if at_cfg is not None and DEV == "cuda":  # the step with the attention sweep's winner
        def manual():
            unique_scores(q, mean, std, pt, lens, S, max_pages=P, out=scores, mean_scale=scale,
                          mean_center=center)
            topk_pages(scores, lens, S, kp, page_table=pt, out=sel2)
            return paged_decode(q, cache.k[0], cache.v[0], sel2, pt, lens, out=out2, **at_cfg)
        t, o = graph_us(manual)
        step_us["lib_best_attn_cfg"] = round(t, 2)
        step_diff["lib_best_attn_cfg"] = bool(torch.equal(o, out))

    dense_out = torch.empty_like(out)
    t_dense = min(med_us(lambda ns=ns: paged_decode(q, cache.k[0], cache.v[0], pt.unsqueeze(1),
                                                    pt, lens, out=dense_out, num_splits=ns,
                                                    block_pg=8))
                  for ns in (None, 16, 32))
    t_fi, o_fi, fi_notes = flashinfer_dense(q, cache, pt, lens)
    t_sdpa, o_sdpa = sdpa_dense(q, cache, pt, lens, ctx)
    err_dense_vs_sdpa = rel(dense_out, o_sdpa)
    err_fi = rel(o_fi, o_sdpa) if o_fi is not None else None

    mean_bytes = D + 4 if scale is not None else D * 2  # one byte + its scale, or bf16
    floor_bytes = (B * HKV * P * (mean_bytes + 4)     # page means + stds (fp32)
                   + B * HKV * kp * S * D * 2 * 2)    # selected K and V pages
    floor = floor_bytes / bw * 1e6
    unique = step_us.get("lib") or t_eager
    rec = dict(bench="decode_step", **info, batch=B, context=ctx, budget=budget, page_size=S,
               heads=H, kv_heads=HKV, head_dim=D, dtype="bf16", stats_dtype=stats_dtype,
               unique_us=round(unique, 2), unique_eager_us=round(t_eager, 2),
               score_us=round(t_sc, 2), topk_us=round(t_tk, 2), attn_us=round(t_at, 2),
               floor_us=round(floor, 2), copy_bw_tbs=round(bw / 1e12, 3),
               flashinfer_dense_us=round(t_fi, 2) if t_fi else None, flashinfer_notes=fi_notes,
               sdpa_dense_us=round(t_sdpa, 2), triton_dense_us=round(t_dense, 2),
               total_over_floor=round(unique / floor, 3),
               speedup_vs_flashinfer=round(t_fi / unique, 2) if t_fi else None,
               speedup_vs_sdpa=round(t_sdpa / unique, 2),
               achieved_tbs=round(floor_bytes / unique / 1e6, 3),
               step_variants_us=step_us, step_variants_bitwise_equal=step_diff,
               step_variants_over_floor={k: (round(v / floor, 3) if v else None)
                                         for k, v in step_us.items()},
               attn_best_cfg=at_cfg, attn_best_us=round(t_at_best, 2) if t_at_best else None,
               score_best_cfg=sc_cfg, score_best_us=round(t_sc_best, 2) if t_sc_best else None,
               sweep_us={"attn": at_all, "score": sc_all},
               rel_err_sparse_vs_f64=err_sparse, sel_match_vs_reference=overlap,
               sel_agree_vs_bf16_means=None if agree_bf16 is None else round(agree_bf16, 4),
               rel_err_triton_dense_vs_sdpa=err_dense_vs_sdpa, rel_err_flashinfer_vs_sdpa=err_fi,
               timing="do_bench median, L2 flushed per call; unique_us = CUDA-graph replay of "
                      "api.sparse_step with library defaults (what unique_decode runs: single "
                      "stream, PDL on sm_90)", time=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                   time.gmtime()))
    log(rec)
    return rec


def graph_us(step):
    """Median time of one CUDA-graph replay of step (launch gaps removed, L2 flushed), and the
    captured step's return value (its tensors hold the last replay's results)."""
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        step()
        step()
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        res = step()
    t = med_us(g.replay)
    torch.cuda.synchronize()
    return t, res


def bench_table8(bw, info, gen, log, contexts):
    """Score kernel alone, batch 32 (the paper's 32 decoding queries), random page stats."""
    B = 32
    for ctx in contexts:
        P = ctx // S
        mean = torch.randn(B * P, HKV, D, device=DEV, generator=gen).bfloat16()
        std = torch.rand(B * P, HKV, device=DEV, generator=gen)
        pt = torch.arange(B * P, device=DEV, dtype=torch.int32).view(B, P)
        lens = torch.full((B,), ctx, device=DEV, dtype=torch.int32)
        q = torch.randn(B, H, D, device=DEV, generator=gen).bfloat16()
        out = torch.empty(B, HKV, P, device=DEV)
        cfg, t, _ = best_of(lambda c: unique_scores(
            q, mean, std, pt, lens, S, max_pages=P, out=out, **c), SCORE_CFGS)  # noqa: B023
        unique_scores(q, mean, std, pt, lens, S, max_pages=P, out=out, **cfg)
        ref = R.unique_page_scores(q, mean.view(B, P, HKV, D).permute(0, 2, 1, 3),
                                   std.view(B, P, HKV).permute(0, 2, 1))
        ref[:, :, -1] = float("inf")
        err = (out[:, :, :-1] - ref[:, :, :-1]).abs().max().item()
        nbytes = B * HKV * P * (D * 2 + 4 + 4) + B * P * 4  # means, stds, scores out, table
        floor = nbytes / bw * 1e6
        log(dict(bench="score", **info, batch=B, context=ctx, page_size=S, heads=H,
                 kv_heads=HKV, head_dim=D, score_us=round(t, 2), floor_us=round(floor, 2),
                 over_floor=round(t / floor, 3), achieved_tbs=round(nbytes / t / 1e6, 3),
                 paper_h100_us={8192: 39, 32768: 99, 131072: 342}.get(ctx),
                 cfg=cfg, max_abs_err=err))


def bench_table9(info, gen, log, pages_list, rows=256, k=64):
    """Top-k alone against torch.topk on the same float32 scores."""
    for P in pages_list:
        sc = torch.randn(rows, 1, P, device=DEV, generator=gen)
        lens = torch.full((rows,), P * S, device=DEV, dtype=torch.int32)
        pt = torch.arange(P, device=DEV, dtype=torch.int32)[None].expand(rows, P).contiguous()
        sel = torch.empty(rows, 1, k, device=DEV, dtype=torch.int32)
        topk_pages(sc, lens, S, k, page_table=pt, out=sel)
        want = torch.topk(sc[:, 0], k, dim=-1).indices.sort(-1).values
        ok = torch.equal(sel[:, 0].long().sort(-1).values, want)
        cfg, t, allt = best_of(lambda c: topk_pages(
            sc, lens, S, k, page_table=pt, out=sel, **c), TOPK_CFGS)  # noqa: B023
        t_ref = med_us(lambda: torch.topk(sc[:, 0], k, dim=-1, sorted=False))  # noqa: B023
        log(dict(bench="topk", **info, rows=rows, pages=P, k=k, topk_us=round(t, 2),
                 cfg=cfg, sweep_us=allt, torch_topk_us=round(t_ref, 2),
                 speedup_vs_torch=round(t_ref / t, 2),
                 paper_h100_us={1024: 13, 4096: 14, 16384: 22}.get(P), exact_match=ok))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench/results/decode_step.jsonl")
    ap.add_argument("--contexts", default="8192,16384,32768")
    ap.add_argument("--batch", type=int, default=80)
    ap.add_argument("--long-contexts", default="65536,131072")
    ap.add_argument("--long-batch", type=int, default=16)
    ap.add_argument("--budget", type=int, default=512)
    ap.add_argument("--stats-dtype", default="bf16", choices=("bf16", "fp8", "int8"),
                    help="page means of the cache (decode.sparse.stats_dtype)")
    ap.add_argument("--skip-tables", action="store_true")
    ap.add_argument("--tables", default="8,9",
                    help="which paper tables to run (8: score grid, 9: top-k grid)")
    ap.add_argument("--fast", action="store_true",
                    help="library defaults only: no attention-config sweep")
    ap.add_argument("--all-variants", action="store_true",
                    help="also time the 2-stream step")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run (TRITON_INTERPRET=1)")
    args = ap.parse_args(argv)
    global DEV, H, HKV, D
    if args.smoke:
        DEV, H, HKV, D = "cpu", 8, 2, 32
    elif not torch.cuda.is_available():
        raise SystemExit("decode_step bench: needs a CUDA GPU (run it through the device tool)")
    info = env_info()
    gen = torch.Generator(device=DEV).manual_seed(0)
    bw = copy_bandwidth()
    recs = []

    def log(rec):
        recs.append(rec)
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)

    ints = lambda s: [int(x) for x in s.split(",") if x]
    if args.smoke:
        args.contexts, args.long_contexts, args.batch, args.budget = "200,77", "", 3, 64
    for ctx in ints(args.contexts):
        bench_step(args.batch, ctx, args.budget, bw, info, gen, log, args.fast,
                   args.all_variants, args.stats_dtype)
        if DEV == "cuda":
            torch.cuda.empty_cache()
    for ctx in ints(args.long_contexts):
        bench_step(args.long_batch, ctx, args.budget, bw, info, gen, log, args.fast,
                   args.all_variants, args.stats_dtype)
        if DEV == "cuda":
            torch.cuda.empty_cache()
    tables = set() if args.skip_tables else set(args.tables.split(","))
    if "8" in tables:
        t8 = [256, 512] if args.smoke else [8192, 16384, 32768, 65536, 131072]
        bench_table8(bw, info, gen, log, t8)
    if "9" in tables:
        t9 = [64, 300] if args.smoke else [1024, 2048, 4096, 8192, 16384]
        bench_table9(info, gen, log, t9, rows=8 if args.smoke else 256,
                     k=16 if args.smoke else 64)
    from plot import print_table, write_plot
    print_table(recs)
    write_plot(recs, args.out.rsplit(".", 1)[0] + ".svg")


if __name__ == "__main__":
    main()
