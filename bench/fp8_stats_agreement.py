"""Top-k page agreement of one-byte page means (decode.sparse.stats_dtype=fp8 and int8) with bf16
ones, on the keys and queries of a real LLM (CPU).

Runs a pretrained decoder (default SmolLM2-135M, the speech LLM's) over a long English text
(Debian fortunes), keeps every layer's post-RoPE keys and queries, fills one PagedKVCache per
stats dtype with the keys (bf16 cache), scores the pages for the queries of the last positions
with the UNIQUE score (reference implementation) and reports, per budget, the share of the pages
picked with bf16 means that fp8 means pick too (all keys are written at once, so each head's
centre is the mean of all of them, as a prefill's is). Random keys (unit noise plus a
per-dimension offset of std 0.5) give the same figure for comparison. Appends one JSON line per setting to bench/results/fp8_stats_agreement.jsonl.

    .venv/bin/python bench/fp8_stats_agreement.py [--tokens 4096] [--budgets 256 512 1024]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from unique_asr.attention import reference as R
from unique_asr.attention.paged_cache import PagedKVCache


def capture_qk(decoder, ids: torch.Tensor):
    """Post-RoPE (q [H, T, D], k [Hkv, T, D]) of every layer for one token sequence."""
    from unique_asr.models import decoder as dec_mod

    got = []
    orig = dec_mod.DecoderAttention._qkv

    def spy(self, x, cos, sin):
        q, k, v = orig(self, x, cos, sin)
        got.append((q[0].detach(), k[0].detach()))
        return q, k, v

    dec_mod.DecoderAttention._qkv = spy
    try:
        with torch.no_grad():
            decoder.hidden(decoder.embed(ids[None]), torch.arange(ids.numel()))
    finally:
        dec_mod.DecoderAttention._qkv = orig
    return got


def agreement(q: torch.Tensor, k: torch.Tensor, budgets: list[int], page_size: int = 8,
              lam: float = 0.5, stats: str = "fp8") -> dict[int, float]:
    """Share of bf16-selected pages that `stats` means (fp8 or int8) also select, per budget
    (tokens). q [Q, H, D] queries scored against all keys k [Hkv, T, D]."""
    Hkv, T, D = k.shape
    n_pages = -(-T // page_size)
    picks = []
    for kind in ("bf16", stats):
        c = PagedKVCache(1, Hkv, D, n_pages, 1, page_size=page_size, dtype=torch.bfloat16,
                         stats_dtype=kind)
        s = c.add_sequence()
        c.reserve([s], T)
        c.write(0, k.transpose(0, 1), k.transpose(0, 1))
        pt, lens = c.batch([s])
        pages = pt.long().clamp_min(0).expand(q.shape[0], -1)
        sc = R.paged_page_scores(q.to(torch.bfloat16), c, 0, pages,
                                 lens.expand(q.shape[0]), "unique", lam)
        picks.append(sc)
    out = {}
    for budget in budgets:
        kk = min(budget // page_size, n_pages)
        a = picks[0].topk(kk, -1).indices.flatten(0, 1)
        b = picks[1].topk(kk, -1).indices.flatten(0, 1)
        same = sum(len(set(x.tolist()) & set(y.tolist())) for x, y in zip(a, b))
        out[budget] = same / a.numel()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--queries", type=int, default=32, help="last positions used as queries")
    ap.add_argument("--budgets", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--fortunes", default="/usr/share/games/fortunes")
    a = ap.parse_args()

    from unique_asr.models.loaders.pretrained import load_llm

    dec, tok = load_llm(a.llm)
    text = " ".join((Path(a.fortunes) / f).read_text(errors="replace")
                    for f in ("fortunes", "literature", "riddles", "wisdom"))
    ids = torch.tensor(tok.encode(text.replace("%\n", " "))[: a.tokens])
    t0 = time.perf_counter()
    layers = capture_qk(dec.eval(), ids)
    g = torch.Generator().manual_seed(0)
    Hkv, D, H = layers[0][1].shape[0], layers[0][1].shape[2], layers[0][0].shape[0]
    # random keys with per-dimension offsets (attn_testutil.make_cache's distribution)
    kr = torch.randn(Hkv, a.tokens, D, generator=g) + 0.5 * torch.randn(1, 1, D, generator=g)
    qr = torch.randn(a.queries, H, D, generator=g)
    out = {"bench": "fp8_stats_agreement", "llm": a.llm, "tokens": int(ids.numel()),
           "layers": len(layers), "queries": a.queries, "page_size": 8, "lam": 0.5}
    for stats in ("fp8", "int8"):
        rows = [agreement(q[:, -a.queries:].transpose(0, 1), k, a.budgets, stats=stats)
                for q, k in layers]  # queries [Q, H, D] of the last positions
        res = {b: sum(r[b] for r in rows) / len(rows) for b in a.budgets}
        worst = {b: min(r[b] for r in rows) for b in a.budgets}
        rnd = agreement(qr, kr, a.budgets, stats=stats)
        sfx = "" if stats == "fp8" else "_int8"  # the fp8 keys keep their earlier names
        out.update({f"agreement_mean_over_layers{sfx}": res,
                    f"agreement_worst_layer{sfx}": worst,
                    f"agreement_random_keys{sfx}": rnd})
    out.update({"fp8_layout": "e4m3 (int8: symmetric integer, |max| -> 127) offsets from the "
                              "sequence's centre (mean of its prefill keys), float32 scale per "
                              "(page, KV head)",
                "seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__,
                "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime())})
    print(json.dumps(out, indent=1))
    res_dir = Path(__file__).resolve().parent / "results"
    with open(res_dir / "fp8_stats_agreement.jsonl", "a") as f:
        f.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
