"""Table and plot of decode_step benchmark records (pure Python: SVG, no matplotlib needed).

    python3 bench/plot.py bench/results/decode_step.jsonl   # table + .svg beside it
"""

from __future__ import annotations

import json
import sys


def _rows(recs, bench):
    """Records of one benchmark, the latest per setting (results files are append-only)."""
    latest = {}
    for r in recs:
        if r.get("bench") == bench:
            key = (r.get("batch"), r.get("context"), r.get("rows"), r.get("pages"))
            latest[key] = r
    return list(latest.values())


def print_table(recs) -> None:
    """Short fixed-width tables of the three benchmarks (what the device reply shows last)."""
    steps = _rows(recs, "decode_step")
    if steps:
        print("\nUNIQUE decode step (us, medians; bf16, 32/8 heads, D128, page 8)")
        print(f"{'B':>3} {'ctx':>6} {'score':>7} {'topk':>6} {'attn':>6} {'step':>7} "
              f"{'eager':>7} {'floor':>6} {'x flr':>6} {'FI dns':>7} {'SDPA':>7} {'tri dns':>7} "
              f"{'vsFI':>6} {'vsSDPA':>6}")
        for r in steps:
            print(f"{r['batch']:>3} {r['context']:>6} {r['score_us']:>7.1f} {r['topk_us']:>6.1f} "
                  f"{r['attn_us']:>6.1f} {r['unique_us']:>7.1f} {r['unique_eager_us']:>7.1f} "
                  f"{r['floor_us']:>6.1f} {r['total_over_floor']:>6.2f} "
                  f"{(r['flashinfer_dense_us'] or float('nan')):>7.1f} {r['sdpa_dense_us']:>7.1f} "
                  f"{r['triton_dense_us']:>7.1f} {(r['speedup_vs_flashinfer'] or float('nan')):>6.2f} "
                  f"{r['speedup_vs_sdpa']:>6.2f}")
        var = [r for r in steps if r.get("step_variants_us")]
        if var:
            names = list(var[0]["step_variants_us"])
            print("\nStep variants (CUDA graph, us / x floor; 'lib' = api.unique_decode default; "
                  "= : bitwise equal to lib's eager output)")
            print(f"{'B':>3} {'ctx':>6} " + " ".join(f"{n:>20}" for n in names))
            for r in var:
                cells = []
                for n in names:
                    t = r["step_variants_us"].get(n)
                    eq = r["step_variants_bitwise_equal"].get(n) is True
                    miss = "failed" if n in r["step_variants_us"] else "not run"
                    cells.append(f"{t:>8.1f} {t / r['floor_us']:>5.3f}x {'=' if eq else '!'}"
                                 if t else f"{miss:>20}")
                print(f"{r['batch']:>3} {r['context']:>6} " + " ".join(f"{c:>20}" for c in cells))
            for r in var:
                if r.get("attn_best_cfg"):
                    print(f"  ctx {r['context']}: attn default {r['attn_us']:.1f} us, best "
                          f"{r['attn_best_us']:.1f} us with {r['attn_best_cfg']}")
    sc = _rows(recs, "score")
    if sc:
        print("\nTable 8 grid: score kernel, batch 32 (us)")
        for r in sc:
            print(f"  ctx {r['context']:>6}: {r['score_us']:7.1f}  floor {r['floor_us']:6.1f}  "
                  f"x{r['over_floor']:.2f}  {r['achieved_tbs']:.2f} TB/s  "
                  f"(paper H100: {r['paper_h100_us']})")
    tk = _rows(recs, "topk")
    if tk:
        print("\nTable 9 grid: top-k, 256 rows, k=64 (us)")
        for r in tk:
            print(f"  pages {r['pages']:>6}: {r['topk_us']:6.1f}  torch.topk {r['torch_topk_us']:6.1f}"
                  f"  x{r['speedup_vs_torch']:.2f}  exact={r['exact_match']}  "
                  f"(paper H100: {r['paper_h100_us']})")


def write_plot(recs, path: str) -> None:
    """Speedup of the UNIQUE step over each dense baseline against context (log2 x axis)."""
    import math

    steps = sorted(_rows(recs, "decode_step"), key=lambda r: r["context"])
    if not steps:
        return
    W, Hh, m = 640, 400, 60
    series = [("speedup_vs_flashinfer", "vs FlashInfer dense", "#1f77b4"),
              ("speedup_vs_sdpa", "vs torch SDPA dense", "#d62728")]
    xs = [math.log2(r["context"]) for r in steps]
    ys = [r[k] for r in steps for k, _, _ in series if r.get(k) is not None] or [1.0]
    x0, x1 = min(xs) - 0.3, max(xs) + 0.3
    y1 = max(max(ys) * 1.15, 1e-3)

    def px(x):
        return m + (x - x0) / (x1 - x0) * (W - 2 * m)

    def py(y):
        return Hh - m + -y / y1 * (Hh - 2 * m)

    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{Hh}" '
           'font-family="sans-serif" font-size="12">'),
           f'<rect width="{W}" height="{Hh}" fill="white"/>',
           f'<line x1="{m}" y1="{Hh - m}" x2="{W - m}" y2="{Hh - m}" stroke="black"/>',
           f'<line x1="{m}" y1="{m}" x2="{m}" y2="{Hh - m}" stroke="black"/>',
           (f'<text x="{W / 2}" y="{Hh - 15}" text-anchor="middle">context (tokens); batch '
           'in brackets</text>'),
           (f'<text x="15" y="{Hh / 2}" transform="rotate(-90 15 {Hh / 2})" '
           'text-anchor="middle">speedup of UNIQUE step (x)</text>'),
           (f'<text x="{W / 2}" y="25" text-anchor="middle" font-size="14">UNIQUE decode step '
           'speedup, budget 512, bf16, 32/8 heads, D128</text>')]
    for r, x in zip(steps, xs):
        out.append(f'<text x="{px(x)}" y="{Hh - m + 18}" text-anchor="middle">'
                   f'{r["context"] // 1024}K ({r["batch"]})</text>')
    step = 2 if y1 < 20 else 5
    for t in range(0, int(y1) + 1, step):
        out.append(f'<text x="{m - 8}" y="{py(t) + 4}" text-anchor="end">{t}</text>')
        out.append(f'<line x1="{m}" y1="{py(t)}" x2="{W - m}" y2="{py(t)}" stroke="#ddd"/>')
    for i, (key, label, color) in enumerate(series):
        pts = [(px(x), py(r[key])) for r, x in zip(steps, xs) if r.get(key) is not None]
        if not pts:
            continue
        out.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(
            color, " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)))
        for a, b in pts:
            out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{color}"/>')
        out.append(f'<text x="{m + 10}" y="{m + 15 * i}" fill="{color}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "bench/results/decode_step.jsonl"
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    print_table(records)
    write_plot(records, path.rsplit(".", 1)[0] + ".svg")
