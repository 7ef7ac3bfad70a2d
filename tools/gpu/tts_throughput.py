"""Synthesis throughput per CPU core and per engine, to predict corpus build times.

Speaks the same N corpus sentences with one voice per engine, one at a time (festival in
batches, as stage 0 does), through synth_corpus.voices (engine + resampling + trimming), and
prints seconds of audio per CPU-second (this process + engine subprocesses). With --cache DIR
(a built corpus's data/corpus/cache) it also checks that the audio equals the cached audio of
the same (voice, text), i.e. that these engines (e.g. the GPU bundle) speak exactly as the ones
that built that cache.

    PYTHONPATH=egs/synth_longform/local:$PWD python tools/gpu/tts_throughput.py --n 12 \
        [--fortune-dir DIR] [--cache DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
from synth_corpus.corpus import FESTIVAL_BATCH, _cache_path
from synth_corpus.voices import Voice, synthesize, synthesize_many

from unique_asr.data.text_source import DEFAULT_FORTUNE_DIR, load_sentences

VOICES = [Voice("es_us_m1", "espeak-ng", "en-us+m1", 1.0, 45.0),
          Voice("fl_kal16", "flite", "kal16", 0.95),
          Voice("fe_kal", "festival", "kal_diphone", 1.0)]


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12, help="sentences per engine")
    ap.add_argument("--fortune-dir", default=DEFAULT_FORTUNE_DIR)
    ap.add_argument("--cache", type=Path, help="a corpus cache dir to compare the audio with")
    ap.add_argument("--json", type=Path, help="append one JSON line per engine here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    sentences = load_sentences(args.fortune_dir)
    rng = np.random.default_rng(0)
    order = [sentences[i] for i in rng.permutation(len(sentences))]
    if args.cache:  # prefer sentences every voice has in the cache, so all can be compared
        order.sort(key=lambda t: not all(_cache_path(args.cache, v, t).is_file() for v in VOICES))
    texts = order[:args.n]
    synthesize(VOICES[0], "warm up", 16000)  # imports, first resampler
    rows = []
    for v in VOICES:
        c0, t0 = _cpu(), time.perf_counter()
        if v.engine == "festival":
            audio = [a for i in range(0, len(texts), FESTIVAL_BATCH)
                     for a in synthesize_many(v, texts[i:i + FESTIVAL_BATCH], 16000)]
        else:
            audio = [synthesize(v, t, 16000) for t in texts]
        cpu, wall = _cpu() - c0, time.perf_counter() - t0
        secs = sum(len(a) for a in audio) / 16000
        row = {"engine": v.engine, "voice": v.name, "sentences": len(texts),
               "audio_s": round(secs, 2), "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
               "audio_s_per_cpu_s": round(secs / cpu, 2)}
        if args.cache:
            import soundfile as sf

            same = checked = 0
            for t, a in zip(texts, audio):
                p = _cache_path(args.cache, v, t)
                if p.is_file():
                    checked += 1
                    cached, _ = sf.read(p, dtype="float32")
                    # the cache holds 16-bit audio: equal up to that quantisation
                    same += int(len(cached) == len(a) and np.abs(cached - a).max() <= 1 / 32768)
            row["cache_checked"], row["cache_equal"] = checked, same
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with args.json.open("a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
