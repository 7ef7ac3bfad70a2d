"""Benchmark: UNIQUE soft-mask attention (fused Triton fwd+bwd) vs dense causal SDPA (flash).

Usage (GPU; no venv needed, run from the repo root):
    PYTHONPATH=. python3 bench/softmask_bench.py --out bench/results/softmask_attention.jsonl

Per (seq_len, batch): bf16, 32 query / 8 KV heads, D 128, page 8, budget 512. Times fwd+bwd
(median, triton.testing.do_bench) of softmask (soft and hard) and of torch SDPA restricted to the
flash backend, in the same process, plus the peak memory of one fwd+bwd step of each. A short
correctness check runs first (budget >= context equals SDPA; soft output finite, differs from
dense). An optional small sweep picks block sizes first (--sweep). Appends JSON lines.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel

from unique_asr.attention.softmask import softmask_attention
from unique_asr.attention.triton import softmask as tsm

H, HKV, D, S, BUDGET = 32, 8, 128, 8, 512


def make(B, L, seed=0, grad=True):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(B, H, L, D, device="cuda", generator=g, dtype=torch.bfloat16)
    k = torch.randn(B, HKV, L, D, device="cuda", generator=g, dtype=torch.bfloat16)
    k = k + 0.5 * torch.randn(1, HKV, 1, D, device="cuda", generator=g, dtype=torch.bfloat16)
    v = torch.randn(B, HKV, L, D, device="cuda", generator=g, dtype=torch.bfloat16)
    do = torch.randn(B, H, L, D, device="cuda", generator=g, dtype=torch.bfloat16)
    return [x.requires_grad_(grad) for x in (q, k, v)] + [do]


DENSE_PATH = {"path": "flash, enable_gqa=True"}
WITH_HARD = True  # --no-hard skips hard-mode timing and checks (saves their compile time)


def dense(q, k, v):
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        try:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        except RuntimeError:  # flash without GQA support: expand KV (costs the expand)
            DENSE_PATH["path"] = "flash, KV expanded with repeat_interleave (in the timing)"
            G = q.shape[1] // k.shape[1]
            return F.scaled_dot_product_attention(q, k.repeat_interleave(G, 1),
                                                  v.repeat_interleave(G, 1), is_causal=True)


def soft(q, k, v, mode="soft", tau=0.5):
    return softmask_attention(q, k, v, page_size=S, budget=BUDGET, tau=tau, mode=mode)


def fwd_bwd(fn, q, k, v, do):
    def run():
        out = fn(q, k, v)
        out.backward(do)
    return run


def bench(run, xs, rep=150):
    return triton.testing.do_bench(run, warmup=30, rep=rep, grad_to_none=xs,
                                   return_mode="median")


def peak_mib(run):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def check_reference(L=2048, B=1):
    """bf16 kernel vs the float64 reference (materialises L x L; moderate L)."""
    from unique_asr.attention.reference_softmask import softmask_attention_reference

    q, k, v, do = make(B, L, seed=3)
    out = {}
    for mode in ("soft", "hard") if WITH_HARD else ("soft",):
        xs = [x.detach().clone().requires_grad_() for x in (q, k, v)]
        o = softmask_attention(*xs, page_size=S, budget=BUDGET, tau=0.5, mode=mode)
        g = torch.autograd.grad(o, xs, do)
        rs = [x.detach().double().requires_grad_() for x in (q, k, v)]
        r = softmask_attention_reference(*rs, page_size=S, budget=BUDGET, tau=0.5, mode=mode)
        rg = torch.autograd.grad(r, rs, do.double())
        out[mode] = [rel(o, r)] + [rel(a, b) for a, b in zip(g, rg)]
        print(f"reference check L={L} {mode}: rel err out/dq/dk/dv "
              + " ".join(f"{e:.2e}" for e in out[mode]), flush=True)
        del r, rg, rs
        torch.cuda.empty_cache()
    return out


def check(L=8192, B=1):
    q, k, v, do = make(B, L, seed=1)
    xs = [q, k, v]
    o1 = softmask_attention(q, k, v, page_size=S, budget=L + S, tau=0.5)
    g1 = torch.autograd.grad(o1, xs, do)
    o2 = dense(q, k, v)
    g2 = torch.autograd.grad(o2, xs, do)
    errs = [rel(o1, o2)] + [rel(a, b) for a, b in zip(g1, g2)]
    o3 = soft(q, k, v)
    g3 = torch.autograd.grad(o3, xs, do)
    fin = all(bool(torch.isfinite(t).all()) for t in (o3, *g3))
    diff = rel(o3, o2)
    print(f"check L={L}: budget>=L vs SDPA rel err out/dq/dk/dv "
          + " ".join(f"{e:.2e}" for e in errs) + f"; soft finite={fin}, soft vs dense {diff:.3f}")
    ok = max(errs) < 1e-2 and fin and diff > 1e-3
    ref = check_reference()
    ok = ok and max(ref["soft"]) < 1e-2
    return ok, errs + ref["soft"] + ref.get("hard", []), diff


# Greedy sweep, each step tried on top of the best so far (kept if >= 1.5% faster); ordered by
# expected value so a time cap cuts the least promising last.
SWEEP_STEPS = [
    [{"rev": True}],  # forward / dq: longest query blocks launched first
    [{"streams": 2}],  # dq kernel on a side stream beside dk/dv
    [{"rows_bwd": 64, "bwd_warps": 4}, {"rows_bwd": 64}],
    [{"rows_dq": 64, "dq_warps": 4}, {"rows_dq": 64}],
    [{"bwd_stages": 3}, {"bwd_stages": 1}],
    [{"page_dot": False}],
    [{"fwd_warps": 4}],
]


def sweep(L=16384, B=1, seconds=60.0):
    """Greedy config search on fwd+bwd time at (L, B); returns the chosen overrides and log."""
    q, k, v, do = make(B, L, seed=2)
    xs = [q, k, v]
    t_end = time.time() + seconds

    def timed(c):
        tsm.CONFIG_OVERRIDES.clear()
        tsm.CONFIG_OVERRIDES.update(c)
        try:
            return triton.testing.do_bench(fwd_bwd(soft, q, k, v, do), warmup=60, rep=300,
                                           grad_to_none=xs, return_mode="median")
        except Exception as e:  # noqa: BLE001 - a config may not fit the chip
            print("cfg", c, "failed:", str(e).splitlines()[0][:120], flush=True)
            return float("inf")

    best = {}
    best_ms = timed(best)
    res = [(dict(best), round(best_ms, 3))]
    print(f"sweep L={L} B={B} defaults: {best_ms:.3f} ms", flush=True)
    for step in SWEEP_STEPS:
        for c in step:
            if time.time() > t_end:
                print("sweep: time cap reached", flush=True)
                break
            cand = {**best, **c}
            ms = timed(cand)
            res.append((cand, round(ms, 3)))
            print(f"sweep {cand}: {ms:.3f} ms", flush=True)
            if ms < best_ms * 0.985:
                best, best_ms = cand, ms
    tsm.CONFIG_OVERRIDES.clear()
    tsm.CONFIG_OVERRIDES.update(best)
    return best, res


def measure(L, B):
    """Time and memory of one (seq_len, batch) point; returns its JSON record."""
    q, k, v, do = make(B, L)
    xs = [q, k, v]
    base = torch.cuda.memory_allocated() / 2**20
    d_ms = bench(fwd_bwd(dense, q, k, v, do), xs)
    d_peak = peak_mib(fwd_bwd(dense, q, k, v, do))
    s_ms = bench(fwd_bwd(soft, q, k, v, do), xs)
    s_peak = peak_mib(fwd_bwd(soft, q, k, v, do))
    h_ms = (bench(fwd_bwd(lambda a, b, c: soft(a, b, c, "hard"), q, k, v, do), xs)
            if WITH_HARD else float("nan"))
    with torch.no_grad():
        sf_ms = bench(lambda: soft(q, k, v), None)
        df_ms = bench(lambda: dense(q, k, v), None)
        mh, ml, _, std = tsm.page_stats_triton(k.detach(), S)
        th_ms = bench(lambda: tsm.thresholds_triton(q.detach(), mh, ml, std, Hkv=HKV,
                                                    page_size=S, k_pages=BUDGET // S, lam=0.5),
                      None)
    print(f"L={L:6d} B={B}: soft {s_ms:8.2f} ms  dense {d_ms:8.2f} ms  ratio {s_ms / d_ms:5.2f}"
          f"  hard {h_ms:8.2f}  fwd soft/dense {sf_ms:.2f}/{df_ms:.2f}  thr {th_ms:.2f}  "
          f"peak soft/dense {s_peak:.0f}/{d_peak:.0f} MiB", flush=True)
    return {
        "bench": "softmask_attention", "gpu": None, "torch": torch.__version__,
        "triton": triton.__version__, "seq_len": L, "batch": B,
        "softmask_fwd_bwd_ms": round(s_ms, 4), "dense_fwd_bwd_ms": round(d_ms, 4),
        "fwd_bwd_over_dense": round(s_ms / d_ms, 4),
        "softmask_peak_mib": round(s_peak, 1), "dense_peak_mib": round(d_peak, 1),
        "inputs_mib": round(base, 1),
        "hard_fwd_bwd_ms": round(h_ms, 4) if WITH_HARD else None,
        "softmask_fwd_ms": round(sf_ms, 4), "dense_fwd_ms": round(df_ms, 4),
        "threshold_ms": round(th_ms, 4),
        "config": {"dtype": "bfloat16", "heads": H, "kv_heads": HKV, "head_dim": D,
                   "page_size": S, "budget": BUDGET, "tau": 0.5, "mode": "soft",
                   "dense": "torch sdpa " + DENSE_PATH["path"] + ", is_causal",
                   "timing": "triton.testing.do_bench median, fwd+bwd"},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/softmask_attention.jsonl")
    ap.add_argument("--seq-lens", default="8192,16384")
    ap.add_argument("--batches", default="1,2,4")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--sweep-seconds", type=float, default=60.0)
    ap.add_argument("--no-hard", action="store_true")
    ap.add_argument("--config-out", default="", help="write the chosen overrides (JSON) here")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    global WITH_HARD
    WITH_HARD = not args.no_hard
    torch.backends.cuda.matmul.allow_tf32 = False
    gpu = torch.cuda.get_device_name()
    t0 = time.time()
    ok, errs, _ = check()
    chosen, sweep_res = sweep(seconds=args.sweep_seconds) if args.sweep else ({}, [])
    print(f"chosen config {chosen}  ({time.time() - t0:.0f}s so far)", flush=True)
    if args.config_out:
        with open(args.config_out, "w") as f:
            json.dump(chosen, f)
    rows = []
    for L in [int(x) for x in args.seq_lens.split(",")]:
        for B in [int(x) for x in args.batches.split(",")]:
            rec = measure(L, B)
            rec["config"].update({"blocks": dict(chosen), "check_ok": ok,
                                  "check_rel_err_dense_limit4_ref2048_soft4_hard4": [round(e, 5) for e in errs]})
            rec["gpu"] = gpu
            if args.note:
                rec["note"] = args.note
            rows.append(rec)
            with open(args.out, "a") as f:
                f.write(json.dumps(rec) + "\n")
            torch.cuda.empty_cache()
    print("\n| seq_len | batch | softmask fwd+bwd ms | dense fwd+bwd ms | ratio | "
          "softmask peak MiB | dense peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seq_len']} | {r['batch']} | {r['softmask_fwd_bwd_ms']:.2f} | "
              f"{r['dense_fwd_bwd_ms']:.2f} | {r['fwd_bwd_over_dense']:.2f} | "
              f"{r['softmask_peak_mib']:.0f} | {r['dense_peak_mib']:.0f} |")
    print("sweep:", json.dumps(sweep_res))


if __name__ == "__main__":
    main()
