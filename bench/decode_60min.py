"""Decode one ~60-minute recording made by joining a test set's recordings end to end (CPU).

Measures that long-form decoding finishes and what it costs: wall time, peak resident memory,
RTFx, tokens/s, how many pieces the context forced, and the WER of the joined transcript.

    .venv/bin/python bench/decode_60min.py --data-dir egs/synth_longform/data \\
        --checkpoint egs/synth_longform/exp/tiny/avg-3.pt [--minutes 60] [--random-init]
        [--method ctc_beam --beam 32 --lm-weight 1 --lm-order 9 --token-bonus 1]

--method ctc_beam (run.sh's second decoding) runs the CTC prefix beam search with the token
n-gram built from the lang dir's lm_text.txt (stage 3), as bin/decode does; its build time and
memory count in the figures.

--random-init decodes with a randomly initialised tiny model (no trained checkpoint): the flow,
memory and per-step cost are real, but such a model rarely emits the end token, so it runs to the
token limit. Appends a JSON line to bench/results/decode_60min.jsonl.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from collections import Counter
from pathlib import Path

import torch

from unique_asr.data.paths import RecipeData
from unique_asr.decoding.config import DecodeConfig
from unique_asr.decoding.ngram_lm import lm_for_decoding
from unique_asr.decoding.runner import (
    AudioInput,
    TestRecording,
    decode_recordings,
    load_recordings,
)
from unique_asr.scoring.wer import score_set


def joined_recording(recs: list[TestRecording], minutes: float) -> TestRecording:
    """Concatenate recordings (repeating the set if it is shorter) up to `minutes`."""
    feats, refs, gaps, t, i = [], [], [], 0.0, 0
    while t < minutes * 60:
        r = recs[i % len(recs)]
        feats.append(r.feats)
        refs.append(r.ref)
        gaps += [(t + a, t + b) for a, b in r.gaps]
        t += r.feats.shape[0] / 100.0
        i += 1
    return TestRecording(f"joined{i}", torch.cat(feats), " ".join(refs), t, gaps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--set", default="test")
    ap.add_argument("--checkpoint")
    ap.add_argument("--random-init", action="store_true")
    ap.add_argument("--vocab-size", type=int, default=500)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens-per-second", type=float,
                    default=DecodeConfig.max_tokens_per_second)
    ap.add_argument("--bpe", help="bpe.model (default: the one the checkpoint names)")
    ap.add_argument("--method", default="greedy", help="decode.method (greedy, ctc_beam, ...)")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--lm-weight", type=float, default=0.0, help="ctc_beam: n-gram LM weight")
    ap.add_argument("--lm-order", type=int, default=9)
    ap.add_argument("--token-bonus", type=float, default=0.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rd = RecipeData(Path(args.data_dir).parent, args.data_dir)
    ck_bpe = None
    if not args.random_init:  # the tokenizer the checkpoint was trained with, when it says
        ck_bpe = torch.load(args.checkpoint, map_location="cpu", weights_only=False).get(
            "bpe_model")
    ck_bpe = args.bpe or ck_bpe
    if ck_bpe:
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(ck_bpe))
    else:
        sp = rd.load_bpe(args.vocab_size)
    if args.random_init:
        from unique_asr.models import ModelConfig, build_model

        torch.manual_seed(0)
        model, what = build_model(ModelConfig(n_text=sp.get_piece_size())).eval(), "random-init"
    else:
        from unique_asr.models import load_checkpoint

        model, _ = load_checkpoint(args.checkpoint)
        what = str(args.checkpoint)
    opts = DecodeConfig(max_tokens_per_second=args.max_tokens_per_second, method=args.method,
                        ctc_weight=0.0, beam=args.beam, lm_weight=args.lm_weight,
                        lm_order=args.lm_order, token_bonus=args.token_bonus)
    notes: Counter = Counter()
    recs = load_recordings(rd.load_cuts(args.set), AudioInput(), notes, [])
    rec = joined_recording(recs, args.minutes)
    del recs
    t0 = time.perf_counter()
    lm, _ = lm_for_decoding(opts, sp, ck_bpe or rd.bpe_model_path(args.vocab_size))
    lm_build_s = time.perf_counter() - t0
    res = decode_recordings(model, [rec], sp, opts, "cpu", notes, lm=lm)
    wall = time.perf_counter() - t0
    score = score_set([(r["id"], r["ref"], r["hyp"]) for r in res.rows])
    out = {
        "what": "decode one joined recording, CPU", "model": what,
        "minutes": rec.duration / 60, "pieces": res.rows[0]["pieces"],
        "wall_s": round(wall, 1), "peak_rss_gb": resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "rtfx": res.speed.rtfx, "tokens": res.speed.tokens,
        "tokens_per_s": res.speed.tokens_per_second,
        "prefill_s": res.speed.prefill_seconds, "step_s": res.speed.step_seconds,
        "wer": score.wer, "notes": dict(res.notes), "threads": args.threads,
        "data_dir": str(args.data_dir), "bpe_model": str(ck_bpe or rd.bpe_model_path(args.vocab_size)),
        "max_tokens_per_second": args.max_tokens_per_second, "method": args.method,
        "beam": args.beam, "lm_weight": args.lm_weight, "lm_order": args.lm_order,
        "token_bonus": args.token_bonus, "lm_build_s": round(lm_build_s, 1),
        "audio_tokens": int(rec.feats.shape[0]) // 8,
        "cpu_user_sys_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    print(json.dumps(out, indent=1))
    res_dir = Path(__file__).resolve().parent / "results"
    res_dir.mkdir(exist_ok=True)
    with open(res_dir / "decode_60min.jsonl", "a") as f:
        f.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
