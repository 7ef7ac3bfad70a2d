"""Soft-mask attention over changing sequence lengths: how much time goes to Triton compiles?

Training windows have a new length every step. Triton specialises integer kernel arguments on
their divisibility by 16, so the soft-mask kernels compiled new variants during the first
minutes of a fine-tune (bench/NOTES.md). The CUDA path pads the sequence axis to a multiple of 128 (unique_asr/attention/triton/softmask.py,
CUDA_LENGTH_MULTIPLE). This runs fwd+bwd over random lengths in one fresh process per setting
(each with its own empty Triton cache) and prints steps, total time, slow steps (> 5x the median)
and their time, for --length-multiple 1 (no padding) against the default.

    python3 bench/softmask_varlen_bench.py --steps 60 --min-len 2000 --max-len 9000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def one_setting(args, multiple: int | None) -> dict:
    import torch

    from unique_asr.attention.triton.softmask import softmask_attention_triton

    gen = torch.Generator().manual_seed(args.seed)
    lens = torch.randint(args.min_len, args.max_len + 1, (args.steps,), generator=gen).tolist()
    times = []
    for L in lens:
        q = torch.randn(args.batch, args.heads, L, args.dim, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(args.batch, args.kv_heads, L, args.dim, device="cuda", dtype=torch.bfloat16)
        v = torch.randn_like(k)
        q, k, v = (x.requires_grad_() for x in (q, k, v))
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = softmask_attention_triton(q, k, v, page_size=8, budget=args.budget, tau=0.5,
                                        hard=False, lam=0.5, length_multiple=multiple)
        out.backward(torch.randn_like(out))
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        assert torch.isfinite(q.grad).all()
    med = sorted(times)[len(times) // 2]
    slow = [t for t in times if t > 5 * med]
    return {"bench": "softmask_varlen", "length_multiple": multiple or "default",
            "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
            "steps": len(times), "total_s": round(sum(times), 2),
            "median_ms": round(1e3 * med, 2), "slow_steps": len(slow),
            "slow_s": round(sum(slow), 2), "lens": [args.min_len, args.max_len],
            "batch": args.batch, "heads": args.heads, "kv_heads": args.kv_heads, "dim": args.dim,
            "budget": args.budget}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--min-len", type=int, default=2000)
    p.add_argument("--max-len", type=int, default=9000)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--heads", type=int, default=8)        # the small decoder: 8 query heads,
    p.add_argument("--kv-heads", type=int, default=2)     # 2 KV heads, head dim 64
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--budget", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="bench/results/softmask_varlen.jsonl")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        multiple = None if args.child == "default" else int(args.child)
        print(json.dumps(one_setting(args, multiple)))
        return
    import torch

    if not torch.cuda.is_available():
        sys.exit("softmask_varlen_bench.py: needs a CUDA GPU (it times Triton compiles)")
    rows = []
    for setting in ("1", "default"):
        with tempfile.TemporaryDirectory(prefix="triton_cache_") as cache:
            env = {**os.environ, "TRITON_CACHE_DIR": cache}
            out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", setting],
                                 env=env, capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| length multiple | steps | total s | median ms | slow steps (> 5x median) | their s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['length_multiple']} | {r['steps']} | {r['total_s']} | {r['median_ms']} | "
              f"{r['slow_steps']} | {r['slow_s']} |")
    with open(args.json, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
