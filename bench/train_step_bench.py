"""Training-step wall clock of the speech LLM with dense vs UNIQUE soft/hard decoder attention.

Issue 5 asks the `unique_soft` step to cost at most 1.3x the dense step. This times the whole
step (forward, backward, AdamW) of a model config on random long-form input (batch of whole
recordings of `--seconds` audio, transcripts at ~3 tokens/s), bf16 autocast on CUDA, medians
over `--iters` after warm-up, and appends one JSON line per backend to bench/results/.
Usage: PYTHONPATH=. python3 bench/train_step_bench.py --model conf/model/small.yaml
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time

import torch

from unique_asr.models import build_model
from unique_asr.models.attention import TrainAttentionConfig


def load_model_cfg(preset: str) -> dict:
    """The model config of preset conf/model/<preset>.yaml, as the recipe composes it."""
    from omegaconf import OmegaConf

    from unique_asr.config import compose

    return OmegaConf.to_container(compose([f"model={preset}"]).model, resolve=True)


def time_step(cfg: dict, attention: str, args, device) -> tuple[float, float, float]:
    torch.manual_seed(0)
    model = build_model({**cfg, "dropout": 0.0, "n_text": 500})
    model.set_train_attention(TrainAttentionConfig(attention, budget=args.budget, tau=args.tau))
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    T = int(args.seconds * 100)
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(args.batch, T, 80, generator=g).to(device)
    feat_lens = torch.full((args.batch,), T, device=device)
    n_tok = int(args.seconds * 3)
    tokens = torch.randint(0, 500, (args.batch, n_tok), generator=g).to(device)
    token_lens = torch.full((args.batch,), n_tok, device=device)
    times, losses = [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup + args.iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(feats, feat_lens, tokens, token_lens)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
        losses.append(float(out["loss"].detach()))
    assert all(math.isfinite(x) and abs(x) < 1e4 for x in losses), f"bad losses {losses}"
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return statistics.median(times) * 1e3, losses[0], peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="small", help="a preset of conf/model/")
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--budget", type=int, default=512)
    ap.add_argument("--tau", type=float, default=1.0)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--out", default="bench/results/train_step.jsonl")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = load_model_cfg(args.model)
    rows = {}
    for attention in ("dense", "unique_soft", "unique_hard"):
        ms, loss0, peak = time_step(cfg, attention, args, device)
        rows[attention] = (ms, loss0, peak)
        print(f"{attention:12s} step {ms:9.2f} ms  first loss {loss0:.4f}  peak {peak:.0f} MiB",
              flush=True)
    import triton

    gpu = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor()
    with open(args.out, "a") as f:
        for attention, (ms, loss0, peak) in rows.items():
            f.write(json.dumps({
                "bench": "train_step", "gpu": gpu, "torch": torch.__version__,
                "triton": triton.__version__, "model": args.model, "attention": attention,
                "batch": args.batch, "audio_s": args.seconds, "budget": args.budget,
                "tau": args.tau, "step_ms": round(ms, 3),
                "over_dense": round(ms / rows["dense"][0], 3), "peak_mib": round(peak, 1),
                "date": time.strftime("%Y-%m-%d"),
            }) + "\n")
    print(f"unique_soft / dense step: {rows['unique_soft'][0] / rows['dense'][0]:.3f}x")


if __name__ == "__main__":
    main()
