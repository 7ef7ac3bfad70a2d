"""Decode-step sweep (batch 80): attention, top-k and score configs, plus diagnostics
(the step without one stage), each checked against the float64 reference and the library step
before it is timed (alone and inside the whole step as one CUDA graph, two interleaved rounds).

    python3 bench/attn_sweep.py --out $OUT/attn_sweep.jsonl      # GPU only
"""

from __future__ import annotations

import argparse
import json
import time

import decode_step as ds  # bench/decode_step.py: run as a script, bench/ is on sys.path
import torch

from unique_asr.attention import reference as R
from unique_asr.attention.api import sparse_step
from unique_asr.attention.triton import decode as dec
from unique_asr.attention.triton.score import unique_scores
from unique_asr.attention.triton.topk import topk_pages

# paged_decode configs (grid layout; bench/NOTES.md has the stream-K layouts it beat)
ATTN = {
    "grid": {},
    "grid_split2": {"num_splits": 2},
    "grid_r168": {"maxnreg": 168},
}
SCORE = {"sc_def": {}, "sc_ppp256s3": {"pages_per_prog": 256, "num_stages": 3},
         "sc_ppp512s3": {"pages_per_prog": 512, "num_stages": 3},
         "sc_bp128w8": {"block_p": 128, "pages_per_prog": 512, "num_warps": 8,
                        "num_stages": 3}}


def topk_variants(P):
    blk = max(16, 1 << (P - 1).bit_length())
    w = 4 if blk <= 2048 else (8 if blk <= 4096 else 16)
    return {"tk_def": {}, "tk_2x": {"num_warps": 2 * w}, "tk_half": {"num_warps": max(1, w // 2)},
            "tk_nobounds": {"bounds": False}}


def run_ctx(B, ctx, budget, bw, gen, log):
    S, H, HKV = ds.S, ds.H, ds.HKV
    cache, seqs = ds.build_cache(B, ctx, gen)
    pt, lens = cache.batch(seqs)
    P, kp = -(-ctx // S), budget // S
    q = torch.randn(B, H, ds.D, device=ds.DEV, generator=gen).bfloat16()
    mean, std = cache.mean[0], cache.std[0]
    out_lib, sel_lib = sparse_step(q, cache, 0, budget, (pt, lens), P)
    if ds.DEV == "cuda":
        torch.cuda.synchronize()
    chk = [0, 1, B - 1]
    kk, vv, ll = cache.contiguous(0, chk)
    sel_l = torch.stack([torch.searchsorted(pt[b, :P].long().contiguous(),
                                            sel_lib[b].long().clamp_min(0)) for b in chk])
    ref = R.sparse_attention(q[chk].double(), kk.double(), vv.double(), ll, sel_l, S)
    ref_sel = R.select_pages(R.unique_page_scores(
        q[chk], mean[pt[chk, :P].long()].permute(0, 2, 1, 3),
        std[pt[chk, :P].long()].permute(0, 2, 1)), ll, S, kp)
    sel_ok = (sel_l.sort(-1).values == ref_sel).float().mean().item()
    floor_bytes = B * HKV * P * (ds.D * 2 + 4) + B * HKV * kp * S * ds.D * 2 * 2
    floor = floor_bytes / bw * 1e6
    attn_floor = B * HKV * kp * S * ds.D * 2 * 2 / bw * 1e6
    rec = {"bench": "attn_sweep", "context": ctx, "batch": B, "floor_us": round(floor, 2),
           "attn_floor_us": round(attn_floor, 2), "lib_err_vs_f64": ds.rel(out_lib[chk], ref),
           "lib_sel_match": sel_ok, "variants": {}}
    scores = torch.empty(B, HKV, P, device=ds.DEV)
    sel = torch.empty(B, HKV, kp, device=ds.DEV, dtype=torch.int32)
    out = torch.empty_like(out_lib)

    def step(sc_cfg, tk_cfg, at_cfg):  # a stage whose config is None is skipped (diagnostics)
        if sc_cfg is not None:
            unique_scores(q, mean, std, pt, lens, S, max_pages=P, out=scores, **sc_cfg)
        if tk_cfg is not None:
            topk_pages(scores, lens, S, kp, page_table=pt, out=sel, **tk_cfg)
        if at_cfg is not None:
            dec.paged_decode(q, cache.k[0], cache.v[0], sel, pt, lens, out=out, **at_cfg)
        return out

    combos = sweep_combos(P)
    ok = {}
    for name, (sc, tk, at) in combos.items():  # correctness first
        if name.startswith("diag"):
            ok[name], rec["variants"][name] = True, {}
        else:
            ok[name], rec["variants"][name] = check_variant(
                lambda sc=sc, tk=tk, at=at: step(sc, tk, at), chk, ref, sel, sel_lib, out_lib)
    for name, (sc, tk, at) in combos.items():  # stage alone (attention)
        if ok[name] and sc == {} and tk == {} and at is not None:
            rec["variants"][name]["attn_alone_us"] = round(ds.med_us(lambda at=at: dec.paged_decode(
                q, cache.k[0], cache.v[0], sel_lib, pt, lens, out=out, **at)), 2)
    graphs = {}
    for name, (sc, tk, at) in combos.items():
        if ok[name]:
            try:
                _t, _ = ds.graph_us(lambda sc=sc, tk=tk, at=at: step(sc, tk, at))
                graphs[name] = []
            except Exception as e:  # noqa: BLE001
                rec["variants"][name]["graph_error"] = repr(e)[:300]
    lib_t = []
    for _round in range(2):  # interleaved rounds: each variant's step graph, plus the lib step
        t, _ = ds.graph_us(lambda: sparse_step(q, cache, 0, budget, (pt, lens), P))
        lib_t.append(round(t, 2))
        for name, ts in graphs.items():
            sc, tk, at = combos[name]
            t, _ = ds.graph_us(lambda sc=sc, tk=tk, at=at: step(sc, tk, at))
            ts.append(round(t, 2))
    for name, ts in graphs.items():
        rec["variants"][name]["step_us"] = ts
    rec["lib_step_us"] = lib_t
    best_a, best_t, best_s = best_of_families(graphs)
    sc = combos[best_s][0] if best_s else {}
    tk = combos[best_t][1] if best_t else {}
    o = step(sc, tk, ATTN[best_a])
    combo_ok = ds.rel(o, out_lib) <= 1e-2
    ts = [round(ds.graph_us(lambda: step(sc, tk, ATTN[best_a]))[0], 2) for _ in range(2)]
    rec["combo"] = {"attn": best_a, "topk": best_t, "score": best_s, "step_us": ts,
                    "ok": combo_ok}
    rec["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    log(rec)
    print_ctx(rec, ok, ctx, floor, attn_floor, lib_t, sel_ok, ts)


def sweep_combos(P) -> dict:
    """Variant name -> (score cfg, top-k cfg, attention cfg): every attention config with the
    default score and top-k, every other score / top-k config with the grid attention, and
    diagnostics that skip one stage (None; its inputs left from the runs before) so that the
    stage's share of the graph time shows."""
    combos = {name: ({}, {}, c) for name, c in ATTN.items()}
    combos |= {name + "+grid": ({}, c, ATTN["grid"]) for name, c in topk_variants(P).items()
               if name != "tk_def"}
    combos |= {name + "+grid": (c, {}, ATTN["grid"]) for name, c in SCORE.items()
               if name != "sc_def"}
    combos["diag_no_score"] = (None, {}, ATTN["grid"])
    combos["diag_no_topk"] = ({}, None, ATTN["grid"])
    combos["diag_no_attn"] = ({}, {}, None)
    return combos


def check_variant(run, chk, ref, sel, sel_lib, out_lib) -> tuple[bool, dict]:
    """Run a variant twice: (passes, its record) against the float64 reference (when it selects
    what the library selects), the library's output and its own repeat."""
    v = {}
    try:
        o = run().clone()
        o2 = run()
        if ds.DEV == "cuda":
            torch.cuda.synchronize()
        v["err_vs_f64"] = ds.rel(o[chk], ref) if torch.equal(sel, sel_lib) else None
        v["err_vs_lib"] = ds.rel(o, out_lib)
        v["sel_equal_lib"] = bool(torch.equal(sel, sel_lib))
        v["repeat_bitwise"] = bool(torch.equal(o, o2))
        return (v["err_vs_lib"] <= 1e-2 and v["repeat_bitwise"]
                and (v["err_vs_f64"] is None or v["err_vs_f64"] <= 1e-2)), v
    except Exception as e:  # noqa: BLE001 - record why a variant could not run
        v["error"] = repr(e)[:300]
        return False, v


def best_of_families(graphs: dict) -> tuple[str, str | None, str | None]:
    """Fastest attention config, and the fastest top-k / score variant when it beats the
    default step (else None)."""
    fam_a = {n: min(graphs[n]) for n in ATTN if n in graphs}
    best_a = min(fam_a, key=fam_a.get) if fam_a else "grid"
    graphs_ok = {n: t for n, t in graphs.items() if not n.startswith("diag")}
    fam_t = {n: min(graphs_ok[n]) for n in graphs_ok if n.startswith("tk_")}
    fam_s = {n: min(graphs_ok[n]) for n in graphs_ok if n.startswith("sc_")}
    base = min(graphs.get("grid", [1e9]))
    best_t = min(fam_t, key=fam_t.get) if fam_t and min(fam_t.values()) < base else None
    best_s = min(fam_s, key=fam_s.get) if fam_s and min(fam_s.values()) < base else None
    return best_a, best_t, best_s


def print_ctx(rec, ok, ctx, floor, attn_floor, lib_t, sel_ok, ts) -> None:
    print(f"\n== {ctx // 1024}K  floor {floor:.1f} us (attention alone {attn_floor:.1f}); lib "
          f"step {lib_t}; lib err {rec['lib_err_vs_f64']:.1e} sel match {sel_ok:.3f}")
    print(f"{'variant':16s} {'ok':>3s} {'alone':>7s} {'step r1':>8s} {'step r2':>8s} "
          f"{'x floor':>7s}  err_vs_lib")
    for name, v in rec["variants"].items():
        st = v.get("step_us") or [float("nan")] * 2
        print(f"{name:16s} {str(ok[name])[0]:>3s} {v.get('attn_alone_us', float('nan')):7.1f} "
              f"{st[0]:8.1f} {st[1]:8.1f} {min(st) / floor:7.3f}  "
              f"{v.get('err_vs_lib', float('nan')):.1e} {v.get('error', '')[:80]}")
    print(f"combo {rec['combo']}  x floor {min(ts) / floor:.3f}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench/results/attn_sweep.jsonl")
    ap.add_argument("--contexts", default="16384,32768,8192")
    ap.add_argument("--batch", type=int, default=80)
    ap.add_argument("--budget", type=int, default=512)
    args = ap.parse_args(argv)
    info = ds.env_info()
    print(info, flush=True)
    gen = torch.Generator(device=ds.DEV).manual_seed(0)
    bw = ds.copy_bandwidth()
    print(f"copy bw {bw / 1e12:.3f} TB/s", flush=True)

    def log(rec):
        rec.update(info, copy_bw_tbs=round(bw / 1e12, 3))
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")

    for ctx in [int(x) for x in args.contexts.split(",") if x]:
        run_ctx(args.batch, ctx, args.budget, bw, gen, log)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
