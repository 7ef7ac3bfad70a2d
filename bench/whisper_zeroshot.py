"""Whisper zero-shot WER on a lhotse supervision set: the reference our speech LLM is read against.

Whisper's own encoder + decoder (the offline CTranslate2 wheel, model.encoder.source's model), no
training, greedy, English, no timestamps. Each supervision is decoded alone; one longer than a
30-s window is cut into consecutive 30-s windows whose texts are joined (words at a cut may be
lost: Whisper's own long-form decoding seeks by timestamps instead). Scored with the project's
normaliser and WER (unique_asr.scoring.wer), per speaker and in all.

    .venv/bin/python bench/whisper_zeroshot.py \
        egs/synth_longform/data/real_en/real_en_recordings.jsonl.gz \
        egs/synth_longform/data/real_en/real_en_supervisions.jsonl.gz --model whisper-base
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import torch

from unique_asr.models.loaders.pretrained import WHISPER_PACKAGED
from unique_asr.models.whisper import SAMPLE_RATE, WINDOW_SAMPLES, log_mel
from unique_asr.scoring.wer import score_set


def ct2_dir(name: str) -> str:
    """A packaged Whisper's CTranslate2 directory (as model.encoder.source names it), or a path."""
    return str(WHISPER_PACKAGED[name]()) if name in WHISPER_PACKAGED else name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("recordings")
    ap.add_argument("supervisions")
    ap.add_argument("--model", default="whisper-base",
                    help="whisper-base | whisper-tiny.en | a CTranslate2 Whisper directory")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", default=None, help="append a JSON line with the figures here")
    args = ap.parse_args()

    import ctranslate2
    import tokenizers
    from lhotse import RecordingSet, SupervisionSet

    d = ct2_dir(args.model)
    model = ctranslate2.models.Whisper(d, device="cpu", compute_type="float32",
                                       intra_threads=args.threads)
    tok = tokenizers.Tokenizer.from_file(f"{d}/tokenizer.json")
    prompt = ["<|startoftranscript|>"] + (["<|en|>", "<|transcribe|>"] if model.is_multilingual
                                          else []) + ["<|notimestamps|>"]
    recs = {r.id: r for r in RecordingSet.from_file(args.recordings)}
    sups = list(SupervisionSet.from_file(args.supervisions))

    # (supervision index, window) for every 30-s window of every supervision
    windows: list[tuple[int, torch.Tensor]] = []
    for i, s in enumerate(sups):
        rec = recs[s.recording_id]
        if rec.sampling_rate != SAMPLE_RATE:
            rec = rec.resample(SAMPLE_RATE)
        audio = rec.load_audio(offset=s.start, duration=s.duration)
        a = torch.from_numpy(audio[0])
        for j in range(0, a.numel(), WINDOW_SAMPLES):
            windows.append((i, a[j:j + WINDOW_SAMPLES]))
    texts: dict[int, list[str]] = defaultdict(list)
    t0 = time.perf_counter()
    for b in range(0, len(windows), args.batch):
        chunk = windows[b:b + args.batch]
        mel = torch.stack([log_mel(w, model.n_mels) for _, w in chunk]).numpy()
        res = model.generate(ctranslate2.StorageView.from_array(mel), [prompt] * len(chunk),
                             beam_size=1, max_length=224)
        for (i, _), r in zip(chunk, res):
            texts[i].append(tok.decode(r.sequences_ids[0]).strip())
        print(f"\r{min(b + args.batch, len(windows))}/{len(windows)} windows", end="", flush=True)
    wall = time.perf_counter() - t0
    print()
    by_spk: dict[str, list] = defaultdict(list)
    for i, s in enumerate(sups):
        by_spk[s.speaker].append((s.id, s.text, " ".join(texts[i])))
    rows = {spk: score_set(items) for spk, items in sorted(by_spk.items())}
    total = score_set([x for items in by_spk.values() for x in items])
    audio_s = sum(s.duration for s in sups)
    for name, sc in [*rows.items(), ("ALL", total)]:
        print(f"{name:32s} {sc.nref:6d} words  WER {100 * sc.wer:6.2f}%  "
              f"sub/del/ins {sc.sub}/{sc.dels}/{sc.ins}")
    print(f"{audio_s / 60:.2f} min of audio in {wall:.0f} s (RTFx {audio_s / wall:.1f}, "
          f"{args.threads} threads)")
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(json.dumps({
                "bench": "whisper_zeroshot", "model": args.model, "set": args.supervisions,
                "utterances": len(sups), "audio_s": round(audio_s, 1), "words": total.nref,
                "wer": round(100 * total.wer, 2), "sub": total.sub, "del": total.dels,
                "ins": total.ins,
                "per_speaker": {k: round(100 * v.wer, 2) for k, v in rows.items()},
                "threads": args.threads, "rtfx": round(audio_s / wall, 2),
                "decoding": "greedy, <|en|><|transcribe|><|notimestamps|>, 30-s windows joined",
                "ctranslate2": ctranslate2.__version__}) + "\n")


if __name__ == "__main__":
    main()
