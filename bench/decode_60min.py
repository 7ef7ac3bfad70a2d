"""Decode one long recording made by joining a test set's recordings end to end (or many at once).

Measures that long-form decoding finishes and what it costs: wall time, peak memory (resident
and, on CUDA, GPU), RTFx, tokens/s, how many pieces the context forced, and the WER of the joined
transcript, for each decode attention asked for (the same joined recording, one after another).

    .venv/bin/python bench/decode_60min.py --data-dir egs/synth_longform/data \\
        --checkpoint egs/synth_longform/exp/tiny/avg-3.pt [--minutes 60] [--random-init]
        [--method ctc_beam --beam 32 --lm-weight 1 --lm-order 9 --token-bonus 1]
    python3 bench/decode_60min.py --data-dir egs/synth_longform/data/large \\
        --checkpoint egs/synth_longform/exp/soft/avg-3.pt --minutes 30 --device cuda \\
        --dtype bfloat16 --ctc-weight 0.7 --max-tokens-per-second 6 \\
        --sparse dense unique quest meanonly oracle --budget 512 [--max-positions 65536]

Features are the ones the checkpoint's model reads (stage 2's fbank, or its cached Whisper
outputs under the data dir's feature set); a pretrained LLM brings its own tokenizer.
--max-positions raises the decoder's context (model.llm.max_positions): with it above the
recording's length, the whole recording is decoded in one pass instead of pieces cut at pauses.

--method ctc_beam (run.sh's second decoding) runs the CTC prefix beam search with the token
n-gram built from the lang dir's lm_text.txt (stage 3), as bin/decode does; its build time and
memory count in the figures.

--copies N decodes N such recordings at once (the k-th joined from the set rotated by k, so
copies differ where the set has more than one recording), all in one batch, e.g. 80 concurrent
4-minute recordings through the continuous engine: --copies 80 --minutes 4 --engine continuous
--slots 80 [--cuda-graphs] [--kv-pool-pages P] (--batch-size sets the static engine's rows).

--random-init decodes with a randomly initialised tiny model (no trained checkpoint): the flow,
memory and per-step cost are real, but such a model rarely emits the end token, so it runs to the
token limit. Appends one JSON line per attention to bench/results/decode_60min.jsonl.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from collections import Counter
from functools import partial
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


def joined_recording(recs: list[TestRecording], minutes: float,
                     frame_seconds: float, first: int = 0) -> TestRecording:
    """Concatenate recordings from recs[first] on (repeating the set if it is shorter) up to
    `minutes`."""
    feats, refs, gaps, t, i = [], [], [], 0.0, 0
    while t < minutes * 60:
        r = recs[(first + i) % len(recs)]
        feats.append(r.feats)
        refs.append(r.ref)
        gaps += [(t + a, t + b) for a, b in r.gaps]
        t += r.feats.shape[0] * frame_seconds
        i += 1
    return TestRecording(f"joined{first}-{i}", torch.cat(feats), " ".join(refs), t, gaps)


def load_model(args, device):
    """(model on `device`, tokenizer, its bpe.model path or None, what was loaded)."""
    from unique_asr.decoding.export import ready

    if args.random_init:
        from unique_asr.models import ModelConfig, build_model

        rd = RecipeData(Path(args.data_dir).parent, args.data_dir)
        sp = rd.load_bpe(args.vocab_size)
        torch.manual_seed(0)
        model = build_model(ModelConfig(n_text=sp.get_piece_size())).eval()
        return ready(model, device, args.dtype), sp, rd.bpe_model_path(args.vocab_size), \
            "random-init"
    from unique_asr.models import load_checkpoint

    model, _ = load_checkpoint(args.checkpoint, map_location="cpu")
    model = ready(model, device, args.dtype).eval()
    if model.tokenizer is not None:  # a pretrained LLM's own tokenizer
        return model, model.tokenizer, None, str(args.checkpoint)
    import sentencepiece as spm

    bpe = args.bpe or torch.load(args.checkpoint, map_location="cpu",
                                 weights_only=False).get("bpe_model")
    if not bpe:
        bpe = RecipeData(Path(args.data_dir).parent, args.data_dir).bpe_model_path(
            args.vocab_size)
    return model, spm.SentencePieceProcessor(model_file=str(bpe)), bpe, str(args.checkpoint)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--set", default="test")
    ap.add_argument("--checkpoint")
    ap.add_argument("--random-init", action="store_true")
    ap.add_argument("--vocab-size", type=int, default=500)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--max-tokens-per-second", type=float,
                    default=DecodeConfig.max_tokens_per_second)
    ap.add_argument("--max-positions", type=int, help="raise the decoder's context (one pass)")
    ap.add_argument("--bpe", help="bpe.model (default: the one the checkpoint names)")
    ap.add_argument("--method", default="greedy", help="decode.method (greedy, ctc_beam, ...)")
    ap.add_argument("--ctc-weight", type=float, default=0.0, help="joint CTC weight (greedy)")
    ap.add_argument("--ctc-lookahead", type=int, default=0,
                    help="joint CTC: the CTC head's labels of N frames ahead as candidates")
    ap.add_argument("--sparse", nargs="+", default=["dense"],
                    help="decode attentions to run, one after another (dense unique quest ...)")
    ap.add_argument("--budget", type=int, default=512, help="sparse attention budget (tokens)")
    ap.add_argument("--copies", type=int, default=1, help="joined recordings decoded at once")
    ap.add_argument("--engine", default="static", choices=("static", "continuous"))
    ap.add_argument("--slots", type=int, help="continuous engine: rows at once (default copies)")
    ap.add_argument("--batch-size", type=int, help="static engine: rows (default copies)")
    ap.add_argument("--kv-pool-pages", type=int, help="continuous engine: page pool size")
    ap.add_argument("--cuda-graphs", action="store_true")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--lm-weight", type=float, default=0.0, help="ctc_beam: n-gram LM weight")
    ap.add_argument("--lm-order", type=int, default=9)
    ap.add_argument("--token-bonus", type=float, default=0.0)
    args = ap.parse_args()
    if not args.random_init and not args.checkpoint:
        ap.error("give --checkpoint, or --random-init")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"

    model, sp, bpe_path, what = load_model(args, device)
    if args.max_positions:
        model.cfg.llm.max_positions = int(args.max_positions)
    from unique_asr.models.whisper_features import extractor_for

    audio = AudioInput(16000, model.cfg.input_dim, False, partial(extractor_for, model.cfg))
    rd = RecipeData(Path(args.data_dir).parent, args.data_dir, model.cfg.feature_set)
    notes: Counter = Counter()
    recs = load_recordings(rd.load_cuts(args.set), audio, notes, [])
    joined = [joined_recording(recs, args.minutes, model.input_frame_seconds, k)
              for k in range(args.copies)]
    del recs
    res_dir = Path(__file__).resolve().parent / "results"
    res_dir.mkdir(exist_ok=True)
    rows = []
    for attn in args.sparse:
        opts = DecodeConfig.from_dict({
            "max_tokens_per_second": args.max_tokens_per_second, "method": args.method,
            "ctc_weight": args.ctc_weight, "ctc_lookahead": args.ctc_lookahead,
            "beam": args.beam, "lm_weight": args.lm_weight,
            "lm_order": args.lm_order, "token_bonus": args.token_bonus, "dtype": args.dtype,
            "engine": args.engine, "slots": args.slots or args.copies,
            "batch_size": args.batch_size or args.copies, "kv_pool_pages": args.kv_pool_pages,
            "cuda_graphs": args.cuda_graphs, "sparse": {"method": attn, "budget": args.budget},
            # every copy in one batch (decoding's default caps a batch at 3600 s of audio)
            "max_batch_seconds": 2 * sum(r.duration for r in joined)})
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        lm, _ = lm_for_decoding(opts, sp, bpe_path)
        lm_build_s = time.perf_counter() - t0
        res = decode_recordings(model, joined, sp, opts, device, Counter(), lm=lm)
        wall = time.perf_counter() - t0
        score = score_set([(r["id"], r["ref"], r["hyp"]) for r in res.rows])
        out = {
            "what": f"decode {len(joined)} joined recording(s) at once, {device.type}",
            "model": what, "attention": attn, "budget": args.budget if attn != "dense" else None,
            "copies": len(joined), "engine": args.engine, "slots": opts.slots,
            "cuda_graphs": args.cuda_graphs,
            "minutes": joined[0].duration / 60, "pieces": max(r["pieces"] for r in res.rows),
            "max_positions": model.cfg.llm.max_positions,
            "wall_s": round(wall, 1), "peak_rss_gb": resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1e6,
            "peak_gpu_gb": round(torch.cuda.max_memory_allocated(device) / 1e9, 2) if cuda
            else None,
            "rtfx": res.speed.rtfx, "tokens": res.speed.tokens,
            "tokens_per_s": res.speed.tokens_per_second,
            "prefill_s": res.speed.prefill_seconds, "step_s": res.speed.step_seconds,
            "wer": score.wer, "notes": dict(res.notes), "threads": args.threads,
            "data_dir": str(args.data_dir), "bpe_model": str(bpe_path) if bpe_path else None,
            "max_tokens_per_second": args.max_tokens_per_second, "method": args.method,
            "ctc_weight": args.ctc_weight, "ctc_lookahead": args.ctc_lookahead,
            "dtype": args.dtype,
            "beam": args.beam, "lm_weight": args.lm_weight, "lm_order": args.lm_order,
            "token_bonus": args.token_bonus, "lm_build_s": round(lm_build_s, 1),
            "audio_tokens": model.audio_tokens(int(joined[0].feats.shape[0])),
            "cpu_user_sys_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(device) if cuda
            else platform.processor() or platform.machine(),
            "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        }
        print(json.dumps(out, indent=1), flush=True)
        with open(res_dir / "decode_60min.jsonl", "a") as f:
            f.write(json.dumps(out) + "\n")
        rows.append(out)
    print(f"{len(joined)} x {joined[0].duration / 60:.1f} min, {rows[0]['audio_tokens']} audio "
          f"tokens each, context {model.cfg.llm.max_positions}:")
    for r in rows:
        peak = f", peak GPU {r['peak_gpu_gb']} GB" if cuda else ""
        print(f"  {r['attention']:>9}: WER {100 * r['wer']:.2f}%, RTFx {r['rtfx']:.1f}, "
              f"{r['pieces']} piece(s), {r['wall_s']} s{peak}")


if __name__ == "__main__":
    main()
