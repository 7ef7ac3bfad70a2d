"""Per-token latency of a whole decoder-only LLM decoding with the toolkit's caches: dense
(DenseKVCache) vs UNIQUE (PagedAttentionCache), at the paper's Fig. 3 geometry, with the byte
floor of each (issue 17, benchmark (a)).

Geometry: 16 layers, 32 query / 8 KV heads, head dim 64, width 2048, SwiGLU FFN 8192, vocabulary
32,000 (tied), random bf16 weights; budget 512 tokens, page 8. Each context is decoded with
the largest batch up to --batch whose cache fits the GPU (stated in the record). The caches are
filled with random post-RoPE-like keys (unit noise plus a per-dimension offset) written through
their own APIs (no prefill) up to the context less the steps to come, so that every timed step
attends within the stated context and the cache holds exactly that many tokens (a paged cache
one page longer than a power of two would double the top-k kernel's row block), then --steps
decode steps of the model (embedding, 16 layers, final
norm, LM head, cache advance) are timed after --warmup steps, CUDA-synchronised.

Byte floor (per token, over the measured copy bandwidth): the weights read once, plus dense: the
whole KV cache; unique: every page's statistics (means in bf16, or fp8 or int8 + scale, float32
std) plus the selected pages' K and V (budget tokens per sequence, layer and KV head).

--cuda-graphs: after the eager steps, the same cache decodes --warmup + --steps more steps through
decoding/cuda_graph.GraphedStep (the step's host part, then one graph replay; the first step
captures), timed the same way, so one run gives eager and graphed per-token latency (the
graphed dense step attends over a fixed span: top + 1 rounded up to DenseKVCache.STATIC_SPAN,
at most the cache's length). With --smoke the split step runs eagerly (no graphs on a CPU).

    python3 bench/e2e_decode.py [--contexts 8192 16384 32768] [--batch 80] [--stats-dtype fp8]
    python3 bench/e2e_decode.py --cuda-graphs          # eager and graphed steps, one record each
    python3 bench/e2e_decode.py --cuda-graphs --pytorch-ops  # norms, RoPE, cache write unfused
    python3 bench/e2e_decode.py --cuda-graphs --profile      # + CUDA time by kernel, unique step
    TRITON_INTERPRET=1 .venv/bin/python bench/e2e_decode.py --smoke [--cuda-graphs]  # CPU: flow

One JSON line per context (bench = "e2e_decode") is appended to --out.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback

import torch

from unique_asr.attention.api import SparseConfig
from unique_asr.decoding.cuda_graph import GraphedStep
from unique_asr.models.attention import new_decode_cache
from unique_asr.models.decoder import Decoder
from unique_asr.models.llm_config import LLMConfig

FIG3 = {"hidden": 2048, "layers": 16, "heads": 32, "kv_heads": 8, "head_dim": 64, "ffn": 8192,
        "vocab": 32000}
SMOKE = {"hidden": 64, "layers": 2, "heads": 4, "kv_heads": 2, "head_dim": 16, "ffn": 128,
         "vocab": 100}
PAGE = 8
PAPER_SPEEDUP = {8192: 1.5, 16384: 2.7, 32768: 5.3}  # Fig. 3, against vLLM dense


def _sync(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def fill(cache, ctx: int, g: torch.Generator) -> None:
    """Give every row `ctx` random tokens in every layer, through the cache's own API."""
    dev = cache.lens.device
    B = cache.lens.shape[0]
    paged = hasattr(cache, "kv")
    layers = cache.n_layers if paged else len(cache.k)
    hkv, d = (cache.n_kv_heads, cache.head_dim) if paged else (cache.k[0].shape[1],
                                                               cache.k[0].shape[3])
    offset = torch.randn(1, hkv, d, device=dev, generator=g)
    for b in range(B):
        if paged:  # one reserve per row, then its tokens' K/V layer by layer
            cache.kv.reserve([cache.slots[b]], ctx)
        for layer in range(layers):
            k = torch.randn(ctx, hkv, d, device=dev, generator=g) + offset
            v = torch.randn(ctx, hkv, d, device=dev, generator=g)
            if paged:
                cache.kv.write(layer, k, v)
            else:  # DenseKVCache: [B, Hkv, max_len, D]
                cache.k[layer][b, :, :ctx] = k.transpose(0, 1).to(cache.k[layer].dtype)
                cache.v[layer][b, :, :ctx] = v.transpose(0, 1).to(cache.v[layer].dtype)
    cache.set_lens(torch.full((B,), ctx, dtype=torch.long, device=dev))


def time_steps(step, batch: int, vocab: int, steps: int, warmup: int, dev) -> float:
    """Median seconds of one decode step of the whole model (logits and their argmax
    included); step: tokens -> logits (the decoder's decode_step or a GraphedStep)."""
    tok = torch.randint(0, vocab, (batch,), device=dev)
    ts = []
    with torch.no_grad():
        for i in range(warmup + steps):
            _sync(dev)
            t = time.perf_counter()
            tok = step(tok).argmax(-1)
            _sync(dev)
            if i >= warmup:
                ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def profile(step, batch: int, vocab: int, dev) -> None:
    """CUDA time by kernel over 3 calls of `step`, per step, and the number of launches."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    tok = torch.randint(0, vocab, (batch,), device=dev)
    with torch.no_grad(), torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            step(tok)
        _sync(dev)
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    events.sort(key=lambda e: -e.device_time_total)
    launches = sum(e.count for e in events) / 3
    total = sum(e.device_time_total for e in events) / 3 / 1e3
    print(f"profile: {launches:.0f} kernel launches, {total:.3f} ms CUDA time per step")
    for e in events[:15]:
        print(f"  {e.device_time_total / 3 / 1e3:8.3f} ms  x{e.count / 3:5.0f}  {e.key[:90]}")


def floors(cfg: LLMConfig, B: int, ctx: int, budget: int, stats_dtype: str, bw: float,
           weight_bytes: int) -> tuple[float, float]:
    """(dense, unique) byte floors in seconds per token."""
    kv_token = cfg.layers * cfg.kv_heads * cfg.head_dim * 2 * 2          # K and V, bf16
    dense = weight_bytes + B * ctx * kv_token
    pages = -(-ctx // PAGE)
    mean_bytes = cfg.head_dim + 4 if stats_dtype != "bf16" else cfg.head_dim * 2
    stats = B * cfg.layers * cfg.kv_heads * pages * (mean_bytes + 4)
    selected = B * min(budget, ctx) * kv_token
    return dense / bw, (weight_bytes + stats + selected) / bw


def cache_bytes_per_row(cfg: LLMConfig, ctx: int) -> int:
    """GPU bytes one row of the paged cache takes (K, V, statistics; the larger of the two)."""
    kv = ctx * cfg.layers * cfg.kv_heads * cfg.head_dim * 2 * 2
    stats = -(-ctx // PAGE) * cfg.layers * cfg.kv_heads * (cfg.head_dim * 8 + 12)
    return kv + stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contexts", type=int, nargs="+", default=[8192, 16384, 32768])
    ap.add_argument("--batch", type=int, default=80)
    ap.add_argument("--budget", type=int, default=512)
    ap.add_argument("--stats-dtype", default="bf16", choices=("bf16", "fp8", "int8"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--headroom-gb", type=float, default=6.0)
    ap.add_argument("--out", default="bench/results/e2e_decode.jsonl")
    ap.add_argument("--smoke", action="store_true", help="tiny model on the CPU: the flow only")
    ap.add_argument("--cuda-graphs", action="store_true",
                    help="also time the steps replayed from CUDA graphs (same cache, continued)")
    ap.add_argument("--pytorch-ops", action="store_true",
                    help="RMSNorm, RoPE and the paged cache's decode write as PyTorch ops instead "
                         "of their one-launch kernels (models/triton_ops.py, "
                         "attention/triton/cache_write.py)")
    ap.add_argument("--profile", action="store_true",
                    help="with --cuda-graphs: print the CUDA time by kernel of 3 graphed unique steps "
                         "at each context")
    a = ap.parse_args()
    if a.pytorch_ops:
        import unique_asr.models.decoder as decoder_module

        decoder_module.fused_inference = lambda x: False
    dev = torch.device("cpu" if a.smoke else "cuda")
    if a.smoke:
        a.contexts, a.batch, a.budget, a.steps, a.warmup = [64, 200], 3, 32, 2, 1
    cfg = LLMConfig(**(SMOKE if a.smoke else FIG3))
    torch.manual_seed(0)
    dtype = torch.float32 if a.smoke else torch.bfloat16
    model = Decoder(cfg).to(dev, dtype).eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    import decode_step  # the kernel bench's copy-bandwidth probe (bench/ is on sys.path)

    decode_step.DEV = dev.type
    bw = decode_step.copy_bandwidth()
    g = torch.Generator(device=dev).manual_seed(0)
    for ctx in a.contexts:
        B = a.batch
        if dev.type == "cuda":
            free = torch.cuda.mem_get_info(dev)[0] - a.headroom_gb * 1e9
            B = max(1, min(a.batch, int(free // cache_bytes_per_row(cfg, ctx))))
        ms, graphed, captures, errors = {}, {}, {}, {}
        runs = 2 if a.cuda_graphs else 1
        grow = runs * (a.warmup + a.steps) + (3 if a.profile else 0)  # decode steps to come
        for method in ("dense", "unique"):
            sparse = SparseConfig(method, a.budget, stats_dtype=a.stats_dtype)
            cache = new_decode_cache(cfg.layers, B, ctx,
                                     cfg.kv_heads, cfg.head_dim, dev, dtype, sparse)
            if a.pytorch_ops and method != "dense":
                cache.kv.fused_write = False
            fill(cache, ctx - grow, g)
            timing = (B, cfg.vocab, a.steps, a.warmup, dev)
            ms[method] = time_steps(lambda tok, c=cache: model.decode_step(tok, c),
                                    *timing) * 1e3
            if a.cuda_graphs:  # a failed capture is recorded; the eager figures still count
                step = GraphedStep(model, cache, graphs=dev.type == "cuda", static=True)
                try:
                    graphed[method] = time_steps(step, *timing) * 1e3
                except RuntimeError as e:
                    traceback.print_exc()
                    graphed[method], errors[method] = None, repr(e)
                captures[method] = step.captures
                if a.profile and method == "unique":
                    profile(step, B, cfg.vocab, dev)
                del step
            del cache
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        f_dense, f_unique = floors(cfg, B, ctx, a.budget, a.stats_dtype, bw, weight_bytes)
        rec = {"bench": "e2e_decode",
               "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu (smoke)",
               "torch": torch.__version__, "context": ctx, "filled": ctx - grow, "batch": B,
               "batch_asked": a.batch, "budget": a.budget, "stats_dtype": a.stats_dtype,
               "geometry": {k: getattr(cfg, k) for k in FIG3},
               "unique_ms_per_token": round(ms["unique"], 3),
               "dense_ms_per_token": round(ms["dense"], 3),
               "unique_floor_ms": round(f_unique * 1e3, 3),
               "dense_floor_ms": round(f_dense * 1e3, 3),
               "unique_over_floor": round(ms["unique"] / (f_unique * 1e3), 2),
               "dense_over_floor": round(ms["dense"] / (f_dense * 1e3), 2),
               "speedup_vs_dense": round(ms["dense"] / ms["unique"], 2),
               "paper_speedup_vs_vllm": PAPER_SPEEDUP.get(ctx),
               "copy_bw_tbs": round(bw / 1e12, 3), "weights_gb": round(weight_bytes / 1e9, 3),
               "steps": a.steps, "ops": "pytorch" if a.pytorch_ops else "fused",
               "dense_cache": "DenseKVCache (SDPA over [B, Hkv, L, D])",
               "unique_cache": "PagedAttentionCache (api.decode, Triton kernels on CUDA)",
               "timing": "median wall time of one eager decode step, CUDA-synchronised",
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if a.cuda_graphs:
            def ratio(x, y):
                return None if x is None or y is None else round(x / y, 2)

            rec.update({
                "graphed_unique_ms_per_token": graphed["unique"] and round(graphed["unique"], 3),
                "graphed_dense_ms_per_token": graphed["dense"] and round(graphed["dense"], 3),
                "graph_speedup_unique": ratio(ms["unique"], graphed["unique"]),
                "graph_speedup_dense": ratio(ms["dense"], graphed["dense"]),
                "graphed_speedup_vs_dense": ratio(graphed["dense"], graphed["unique"]),
                "graph_captures": captures, "graph_errors": errors or None,
                "graphed_timing": ("median wall time of one GraphedStep call (host part, then "
                                   "one CUDA graph replay), CUDA-synchronised, same cache "
                                   "after the eager steps" if dev.type == "cuda"
                                   else "the split step run eagerly (no graphs on a CPU)"),
            })
        print(json.dumps(rec), flush=True)
        with open(a.out, "a") as f:
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
