"""Diagnostic: the CTC head's CER and WER per speaker (pseudo-voice) of a split.

Each recording is encoded whole (as decoding does); every sentence is then read from the
best-path CTC output over its own frames (its synthesis times +- 0.16 s), so errors can be
charged to the voice that spoke them. Shows which voices a change helps.

    python bench/ctc_per_speaker.py CKPT CUTS.jsonl.gz [--bpe BPE_MODEL] [--out TSV]
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import jiwer
import sentencepiece as spm
import torch
from lhotse import load_manifest

from unique_asr.models import load_checkpoint
from unique_asr.models.ctc import ctc_greedy
from unique_asr.models.speech_llm import ENC_FRAMES_PER_S

MARGIN_S = 0.16  # the same margin training's per-sentence CTC uses (model.ctc_segments)


def per_speaker(model, cuts, sp, device: str) -> dict[str, tuple[list[str], list[str]]]:
    """speaker -> (references, hypotheses), one entry per sentence."""
    fps = ENC_FRAMES_PER_S * model.ctc.upsample  # CTC frames per second
    out: dict[str, tuple[list[str], list[str]]] = collections.defaultdict(lambda: ([], []))
    for cut in cuts:
        feats = torch.from_numpy(cut.load_features())[None].to(device)
        with torch.no_grad():
            _, _, logp, n = model.encode_with_ctc(feats, torch.tensor([feats.shape[1]], device=device))
        for s in cut.supervisions:
            a = max(0, int((s.start - MARGIN_S) * fps))
            b = min(int(n[0]), int((s.end + MARGIN_S) * fps))
            ids = ctc_greedy(logp[:, a:b].float().cpu(), torch.tensor([max(b - a, 0)]),
                             model.cfg.ctc_blank)[0]
            refs, hyps = out[s.speaker]
            refs.append(s.text)
            hyps.append(sp.decode(list(ids)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt")
    ap.add_argument("cuts", help="fbank cuts manifest, e.g. data/fbank/cuts_test.jsonl.gz")
    ap.add_argument("--bpe", help="bpe.model (default: the path stored in the checkpoint)")
    ap.add_argument("--out", help="also write the table here (TSV)")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    bpe = args.bpe or torch.load(args.ckpt, map_location="cpu", weights_only=False).get("bpe_model")
    if not bpe or not Path(bpe).is_file():
        sys.exit(f"ctc_per_speaker: no bpe.model ({bpe!r}); pass --bpe")
    model, _ = load_checkpoint(args.ckpt)
    model.to(device)
    table = per_speaker(model, load_manifest(args.cuts), spm.SentencePieceProcessor(model_file=bpe),
                        device)
    rows = ["speaker\tsentences\tCER\tWER"]
    all_r: list[str] = []
    all_h: list[str] = []
    for spk in sorted(table):
        r, h = table[spk]
        all_r += r
        all_h += h
        rows.append(f"{spk}\t{len(r)}\t{100 * jiwer.cer(r, h):.2f}\t{100 * jiwer.wer(r, h):.2f}")
    rows.append(f"all\t{len(all_r)}\t{100 * jiwer.cer(all_r, all_h):.2f}\t"
                f"{100 * jiwer.wer(all_r, all_h):.2f}")
    print("\n".join(rows))
    if args.out:
        Path(args.out).write_text("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
