"""Where does the soft-mask kernels' float32 error come from? Stage-by-stage errors at full size.

For one draw (by default the full-size case: GQA-4, B 2, H 32, Hkv 8, L 2048, D 128, page 8,
budget 512, tau 0.5, seqlens 2048/1500) it reports, against float64, the error of every stage
of the Triton kernels beside a plain float32 PyTorch run of the reference on the same inputs:
page mean / std, per-(query, past page) GQA-max page scores (from the kernels' own score
kernel), thresholds theta, z = (score - theta) / tau and log g over the gated entries, then out
and dq / dk / dv (dq / dk without the GQA near-tie rows, as the test). Two more lines attribute
the end error: the float64 reference fed the kernels' page scores and theta ("kernel gate in
float64"; if it matches the kernel's errors the gate is the dominant stage), and the scores of
the fp32 score kernel with the float32 measures off (fp32_exact=False, where Triton folds the
~60 score offset into the dot's FMA chain). On CUDA it also prints the dot accumulators of the
compiled kernels (TTIR) and their sqrt / div / ex2 / lg2 instruction mix (PTX).

--emulate (CPU, no Triton): the plain float32 reference with its page scores replaced by a
sequential float32 FMA chain over D, (a) from zero then + offset, (b) starting at the offset
(what Triton 3.6 compiled before the fix); its out/dq/dk/dv errors against float64.

    GPU:  python3 bench/softmask_fp32_diag.py --out $OUT/softmask_fp32_diag.jsonl
    CPU:  python bench/softmask_fp32_diag.py --emulate --case 1,8,2,2048,128,8,512 --seqlens=
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import unique_asr.attention.reference_softmask as R
from unique_asr.attention.reference import LAMBDA

T0 = time.time()


def _log(*a):
    print(f"[{time.time() - T0:5.1f}s]", *a, flush=True)


def _rel(a, b, mask=None):
    a, b = a.double(), b.double()
    if mask is not None:
        a, b = a[mask], b[mask]
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _abs_stats(a, b, mask):
    d = (a.double() - b.double())[mask]
    if d.numel() == 0:
        return float("nan"), float("nan")
    return d.pow(2).mean().sqrt().item(), d.abs().max().item()


def _inputs(B, H, Hkv, L, D, dev, seed):
    """As tests/attention/test_softmask.py: unit keys plus a per-dimension offset."""
    g = torch.Generator(device=dev).manual_seed(seed)
    q = torch.randn(B, H, L, D, device=dev, generator=g)
    k = torch.randn(B, Hkv, L, D, device=dev, generator=g)
    k = k + 0.5 * torch.randn(1, Hkv, 1, D, device=dev, generator=g)
    v = torch.randn(B, Hkv, L, D, device=dev, generator=g)
    do = torch.randn(B, H, L, D, device=dev, generator=g)
    return q, k, v, do


def _tie_keep(q, k, S, budget, sl):
    """The test's GQA near-tie row filter (tests/attention/test_softmask.py::_gqa_tie_keep)."""
    path = os.path.join(ROOT, "tests", "attention", "test_softmask.py")
    spec = importlib.util.spec_from_file_location("_softmask_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod._gqa_tie_keep(q, k, S, budget, sl)


def _reference(q, k, v, do, kw, sl):
    xs = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    out = R.softmask_attention_reference(*xs, seqlens=sl, **kw)
    grads = torch.autograd.grad(out, xs, do.to(out.dtype))
    return [out.detach(), *grads]


def _end_errors(res, ref, keep_q, keep_k):
    return [_rel(a, r, m) for a, r, m in zip(res, ref, (None, keep_q, keep_k, None))]


class _GateSwap:
    """Monkeypatch the reference's page scores / thresholds with given values (gradients still
    flow through the reference's own score formula: value swap only)."""

    def __init__(self, scores, theta):
        self.scores, self.theta = scores, theta
        self.orig = (R.query_page_scores, R.page_thresholds)

    def __enter__(self):
        qps, _pt = self.orig

        def scores_fn(q, mean, std, lam=LAMBDA):
            s = qps(q, mean, std, lam)
            return s + (self.scores.to(s.dtype) - s).detach()

        R.query_page_scores = scores_fn
        R.page_thresholds = lambda scores, page_size, k_pages: self.theta.to(scores.dtype)
        return self

    def __exit__(self, *exc):
        R.query_page_scores, R.page_thresholds = self.orig


# ------------------------------------------------------------------------------- kernels
def _kernel_scores(sm, q, mh, ml, std, qn, Hkv, S, lam, exact):
    """GQA-max page scores [B, Hkv, L, P] from the kernels' _scores_kernel over all queries
    (entries that are not past pages of their query are left NaN)."""
    import triton

    B, H, L, D = q.shape
    G = H // Hkv
    GP = sm._next_pow2(G)
    P = mh.shape[1]
    pw = (L - 1) // S
    scr = torch.full((B * Hkv, L, pw), float("nan"), device=q.device, dtype=torch.float32)
    bt = max(1, 64 // GP) if sm._interpret() else max(1, 128 // GP)
    npc = 64
    grid = (triton.cdiv(L, bt), triton.cdiv(pw, npc), B * Hkv)
    qn_arg = qn if exact else scr
    sm._scores_kernel[grid](q, qn_arg, mh, ml, std, scr, L, H, Hkv, P, 0, L, pw, lam, D=D, BT=bt,
                            GP=GP, G=G, NPC=npc, S=S, USE_LO=False, PREC="ieee", EXACT=exact)
    out = torch.full((B * Hkv, L, P), float("nan"), device=q.device, dtype=torch.float32)
    out[..., :pw] = scr
    return out.view(B, Hkv, L, P)


def _compiled_code_report(sm):
    """Dot accumulators (TTIR) and transcendental / division instruction mix (PTX) of the
    float32 kernels compiled in this process (CUDA only)."""
    rows = []
    for name in ("_stats_kernel", "_scores_kernel", "_fwd_kernel", "_bwd_dq_kernel",
                 "_bwd_dkdv_kernel"):
        fn = getattr(sm, name)
        for entry in getattr(fn, "device_caches", {}).values():
            for ck in entry[0].values():
                asm = getattr(ck, "asm", {})
                ttir, ptx = asm.get("ttir", ""), asm.get("ptx", "")
                zeros = set(re.findall(r"(%[\w.]+) = arith.constant dense<0.0+e\+00> : tensor",
                                       ttir))
                accs = [f"K{m.group(2)}:" + ("zero" if m.group(1) in zeros else "ACC")
                        for m in re.finditer(r"tt.dot %[\w.]+, %[\w.]+, (%[\w.]+).*?: "
                                             r"tensor<\d+x(\d+)x", ttir)]
                ops = {}
                for op in re.findall(r"\b((?:sqrt|div|ex2|lg2|rcp)\.[a-z0-9.]+)", ptx):
                    ops[op] = ops.get(op, 0) + 1
                rows.append({"kernel": name, "dots_K_acc": accs, "ptx_ops": ops})
    return rows


def _stage_errors(name, stage, truth) -> dict:
    """One run's page stats, scores, thresholds, gate logits z and log-gates against float64
    (score/theta/z over the gated entries: past pages of masked in-sequence queries)."""
    mean_x, std_x, sc_x, th_x = stage
    mean64, std64, sc64, th64, z64, sens, gated, rows, tau = truth
    z = (sc_x.double() - th_x.double()[..., None]) / tau
    dz = (z - z64)[gated]
    logg, logg64 = torch.nn.functional.logsigmoid(z), torch.nn.functional.logsigmoid(z64)
    r = {
        "mean_rel": _rel(mean_x.reshape(mean64.shape), mean64),
        "std_rel": _rel(std_x.reshape(std64.shape), std64),
        "score_abs_rms_max": _abs_stats(sc_x, sc64, gated),
        "theta_abs_rms_max": _abs_stats(th_x, th64, rows),
        "z_abs_rms": dz.pow(2).mean().sqrt().item(),
        "z_abs_rms_weighted": ((dz * sens[gated]).pow(2).mean().sqrt()).item(),
        "logg_rel": _rel(logg, logg64, gated),
    }
    _log(f"{name:>10}: mean {r['mean_rel']:.2e} std {r['std_rel']:.2e} | score abs rms/max "
         f"{r['score_abs_rms_max'][0]:.2e}/{r['score_abs_rms_max'][1]:.2e} | theta "
         f"{r['theta_abs_rms_max'][0]:.2e}/{r['theta_abs_rms_max'][1]:.2e} | z rms "
         f"{r['z_abs_rms']:.2e} (x sigmoid(-z) {r['z_abs_rms_weighted']:.2e}) | log g rel "
         f"{r['logg_rel']:.2e}")
    return r


def _end_results(sm, qkvd, kw, sl, kernel_gate, plain_gate, sc64, past) -> dict:
    """out / dq / dk / dv errors against the float64 reference: of the plain float32 reference,
    of the kernel, and of float64 runs that use the kernel's or the plain run's gate."""
    q, k, v, do = qkvd
    S, budget, tau, lam = kw["page_size"], kw["budget"], kw["tau"], kw["lam"]
    sc_k, theta_k = kernel_gate
    sc_p, th_p = plain_gate
    q64, k64 = q.double(), k.double()
    rec = {}
    keep_q, keep_k = _tie_keep(q, k, S, budget, sl)
    ref = _reference(q64, k64, v.double(), do.double(), kw, sl)
    _log("float64 reference fwd+bwd done")
    plain = _reference(q, k, v, do, kw, sl)
    e_plain = _end_errors(plain, ref, keep_q, keep_k)
    del plain
    xs = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    out = sm.softmask_attention_triton(*xs, page_size=S, budget=budget, tau=tau, hard=False,
                                       lam=lam, seqlens=sl)
    kern = [out.detach(), *torch.autograd.grad(out, xs, do)]
    e_kern = _end_errors(kern, ref, keep_q, keep_k)
    del kern
    _log("kernel fwd+bwd done; out/dq/dk/dv rel err: kernel "
         + " ".join(f"{x:.2e}" for x in e_kern) + " | plain fp32 "
         + " ".join(f"{x:.2e}" for x in e_plain))
    with _GateSwap(torch.nan_to_num(sc_k.double(), nan=0.0).where(past, sc64), theta_k.double()):
        swap = _reference(q64, k64, v.double(), do.double(), kw, sl)
    e_swap = _end_errors(swap, ref, keep_q, keep_k)
    del swap
    with _GateSwap(sc_p.double(), th_p.double()):
        swap = _reference(q64, k64, v.double(), do.double(), kw, sl)
    e_swap_p = _end_errors(swap, ref, keep_q, keep_k)
    del swap
    rec.update({"plain_fp32_end": e_plain, "kernel_end": e_kern,
                "float64_with_kernel_gate_end": e_swap, "float64_with_plain_gate_end": e_swap_p,
                "kernel_over_plain": [a / max(b, 1e-30) for a, b in zip(e_kern, e_plain)],
                "near_tie_rows_left_out": [int((~keep_q).sum()), int((~keep_k).sum())]})
    print("end errors against float64, out / dq / dk / dv (dq, dk without near-tie rows "
          f"{rec['near_tie_rows_left_out']}):")
    for name, e in (("plain fp32 reference", e_plain), ("kernel", e_kern),
                    ("float64 + kernel gate", e_swap), ("float64 + plain gate", e_swap_p)):
        print(f"  {name:>22}: " + " ".join(f"{x:.2e}" for x in e))
    print("  kernel / plain: " + " ".join(f"{x:.2f}" for x in rec["kernel_over_plain"]),
          f"(max kernel error {max(e_kern):.2e}; the target is < 1e-5)")
    return rec


def _exact_off_scores(sm, args, kernel_in, sc64, gated, rec) -> None:
    """The fp32 score kernel with the float32 measures off (dot + offset folded): its score
    errors beside the exact kernel's, and its compiled dots."""
    q, mh, ml, std_k, qn = kernel_in
    Hkv, S, lam = args.case[2], args.case[5], LAMBDA
    sc_off = _kernel_scores(sm, q, mh, ml, std_k, qn, Hkv, S, lam, exact=False)
    a = _abs_stats(sc_off, sc64, gated)
    kr = rec["kernel"]["score_abs_rms_max"]
    _log(f"score kernel with fp32_exact off (offset folded into the FMA dot): score abs "
         f"rms/max {a[0]:.2e}/{a[1]:.2e} (fp32_exact on, above: {kr[0]:.2e}/{kr[1]:.2e})")
    for r in _compiled_code_report(sm):
        if r["kernel"] == "_scores_kernel":
            print(f"  compiled {r['kernel']}: dots (K+accumulator) {r['dots_K_acc']} "
                  f"ptx {r['ptx_ops']}")
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps({"bench": "softmask_fp32_diag_exact_off_scores",
                                "case": list(args.case), "seed": args.seed,
                                "score_abs_rms_max": a}) + "\n")


def _versions(dev) -> dict:
    import triton

    v = {"torch": torch.__version__, "triton": triton.__version__}
    return {**v, "gpu": torch.cuda.get_device_name()} if dev == "cuda" else v


def run_gpu(args):
    from unique_asr.attention.triton import softmask as sm

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    B, H, Hkv, L, D, S, budget = args.case
    tau, lam = args.tau, LAMBDA
    kp = budget // S
    sl = torch.tensor(args.seqlens, device=dev) if args.seqlens else None
    q, k, v, do = _inputs(B, H, Hkv, L, D, dev, args.seed)
    kw = {"page_size": S, "budget": budget, "tau": tau, "mode": "soft", "lam": lam}
    rec = {"bench": "softmask_fp32_diag", "case": list(args.case), "seqlens": args.seqlens,
           "tau": tau, "seed": args.seed, **_versions(dev)}

    # ---- float64 truth and plain float32 run of the reference, stage by stage
    q64, k64 = q.double(), k.double()
    mean64, std64 = R.full_page_stats(k64, S)
    sc64 = R.query_page_scores(q64, mean64, std64, lam)
    th64 = R.page_thresholds(sc64, S, kp)
    mean_p, std_p = R.full_page_stats(k, S)
    sc_p = R.query_page_scores(q, mean_p, std_p, lam)
    th_p = R.page_thresholds(sc_p, S, kp)
    _log("float64 / plain fp32 stats, scores, theta done")

    # ---- kernel stages
    mh, ml, mean_k, std_k = sm.page_stats_triton(k, S)
    qn = sm.query_norms(q)
    theta_k = sm.thresholds_triton(q, mh, ml, std_k, Hkv=Hkv, page_size=S, k_pages=kp, lam=lam,
                                   qn=qn).view(B, Hkv, L)
    sc_k = _kernel_scores(sm, q, mh, ml, std_k, qn, Hkv, S, lam, exact=True)
    if dev == "cuda":
        torch.cuda.synchronize()
    _log("kernel stats, theta, scores done")
    P = sc64.shape[-1]
    t = torch.arange(L, device=dev)
    own = t // S
    past = torch.arange(P, device=dev)[None, :] < own[:, None]
    valid = torch.ones(B, L, dtype=torch.bool, device=dev)
    if sl is not None:
        valid = t[None, :] < sl[:, None]
    masked_row = (own >= kp)[None, None, :] & valid[:, None, :]  # [B, 1, L] theta finite
    gated = past[None, None] & masked_row[..., None]  # [B, 1, L, P]
    gated = gated.expand(B, Hkv, L, P)
    rows = masked_row.expand(B, Hkv, L)
    z64 = (sc64 - th64[..., None]) / tau
    sens = torch.sigmoid(-z64)  # d log g / dz: where a z error moves the logits

    print("stage errors against float64 (score/theta/z over gated entries: past pages of "
          "masked in-sequence queries)")
    truth = (mean64, std64, sc64, th64, z64, sens, gated, rows, tau)
    rec["plain_fp32"] = _stage_errors("plain fp32", (mean_p, std_p, sc_p, th_p), truth)
    rec["kernel"] = _stage_errors("kernel", (mean_k, std_k, sc_k, theta_k), truth)

    # ---- end results
    rec.update(_end_results(sm, (q, k, v, do), kw, sl, (sc_k, theta_k), (sc_p, th_p), sc64,
                            past))
    if dev == "cuda":
        try:
            rec["compiled"] = _compiled_code_report(sm)
            for r in rec["compiled"]:
                print(f"  compiled {r['kernel']}: dots (K+accumulator) {r['dots_K_acc']} "
                      f"ptx {r['ptx_ops']}")
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            # a report, never a reason to lose the numbers above
            print("compiled-code report failed:", repr(exc))
    rec["wall_s"] = round(time.time() - T0, 1)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
    # ---- the fp32 score kernel with the float32 measures off (dot + offset folded), last
    if dev == "cuda" and time.time() - T0 < args.budget_s - 25:
        _exact_off_scores(sm, args, (q, mh, ml, std_k, qn), sc64, gated, rec)
    _log("done")
    return rec


# ------------------------------------------------------------------------- CPU emulation
def _fma_chain(q, m, init):
    """Sequential float32 FMA chain over D: acc = fl(acc + q_d m_d) from init (the GPU's
    "ieee" tl.dot lowering); q [..., L, D], m [..., P, D], init [..., L, P]."""
    acc = init.double()
    qd, md = q.double(), m.double()
    for d in range(q.shape[-1]):
        acc = (acc + qd[..., :, d, None] * md[..., None, :, d]).float().double()
    return acc.float()


def run_emulation(args):
    B, H, Hkv, L, D, S, budget = args.case
    sl = torch.tensor(args.seqlens) if args.seqlens else None
    q, k, v, do = _inputs(B, H, Hkv, L, D, "cpu", args.seed)
    kw = {"page_size": S, "budget": budget, "tau": args.tau, "mode": "soft", "lam": LAMBDA}
    orig = R.query_page_scores
    mode = {"v": "plain"}

    def scores_fn(q, mean, std, lam=LAMBDA):
        plain = orig(q, mean, std, lam)
        if mode["v"] == "plain" or q.dtype != torch.float32:
            return plain
        b, h, n, d = q.shape
        qg = q.detach().view(b, mean.shape[1], h // mean.shape[1], n, d)
        qn = torch.linalg.vector_norm(qg.double(), dim=-1).float()  # as query_norms
        off = (lam * qn)[..., None] * std.detach()[:, :, None, None, :]
        m = mean.detach()[:, :, None]
        if mode["v"] == "fold":
            s = _fma_chain(qg, m, off)
        else:  # dot from zero, then one fma(lam ||q||, std, dot)
            dot = _fma_chain(qg, m, torch.zeros_like(off))
            s = (dot.double() + (lam * qn).double()[..., None]
                 * std.detach().double()[:, :, None, None, :]).float()
        return plain + (s.amax(2) - plain).detach()

    keep_q, keep_k = _tie_keep(q, k, S, budget, sl)
    ref = _reference(q.double(), k.double(), v.double(), do.double(), kw, sl)
    R.query_page_scores = scores_fn
    res = {}
    try:
        for m in ("plain", "fixed", "fold"):
            mode["v"] = m
            res[m] = _end_errors(_reference(q, k, v, do, kw, sl), ref, keep_q, keep_k)
            print(f"{m:>6} out/dq/dk/dv rel err " + " ".join(f"{x:.2e}" for x in res[m]),
                  flush=True)
    finally:
        R.query_page_scores = orig
    for m in ("fixed", "fold"):
        print(f"{m:>6} / plain " + " ".join(f"{a / b:.2f}" for a, b in zip(res[m], res["plain"])))
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="2,32,8,2048,128,8,512",
                    help="B,H,Hkv,L,D,page,budget (default: the full-size GQA-4 case)")
    ap.add_argument("--seqlens", default="2048,1500", help="comma list, '' for none")
    ap.add_argument("--tau", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget-s", type=float, default=60.0,
                    help="skip the optional fp32_exact-off score kernel (run last) when less than 15 s of this is left")
    ap.add_argument("--emulate", action="store_true", help="CPU emulation of the dot fold")
    ap.add_argument("--out", default="", help="append the JSON record here")
    args = ap.parse_args(argv)
    args.case = [int(x) for x in args.case.split(",")]
    args.seqlens = [int(x) for x in args.seqlens.split(",")] if args.seqlens else None
    if args.seqlens and len(args.seqlens) != args.case[0]:
        ap.error(f"--seqlens needs {args.case[0]} lengths (one per batch row)")
    if math.prod(args.case[:4]) <= 0:
        ap.error("--case sizes must be positive")
    torch.manual_seed(args.seed)
    if args.emulate:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        return run_emulation(args)
    return run_gpu(args)


if __name__ == "__main__":
    main()
