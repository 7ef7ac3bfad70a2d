"""Validation during training: loss on fixed dev windows and greedy WER on whole dev recordings."""

from __future__ import annotations

import torch


@torch.no_grad()
def valid_losses(model, batches, device, autocast, shuffled: bool = False) -> dict:
    """Dev loss per token; with shuffled=True also the decoder's cross-entropy per token on the
    true audio and on another window's audio (the batch rotated by one). Equal values mean the
    decoder ignores the audio and works as a text LM."""
    was = model.training
    model.eval()
    tot, ce, ce_shuf, n, n_shuf = 0.0, 0.0, 0.0, 0, 0
    for b in batches:
        feats, flens = b["feats"].to(device), b["feat_lens"].to(device)
        toks, tlens = b["tokens"].to(device), b["token_lens"].to(device)
        with autocast():
            out = model(feats, flens, toks, tlens)
        tot += float(out["loss_sum"])
        n += int(out["ntokens"])
        if shuffled and feats.shape[0] > 1:
            ce += float(out["ce_sum"])
            with autocast():
                out = model(feats.roll(1, 0), flens.roll(1, 0), toks, tlens)
            ce_shuf += float(out["ce_sum"])
            n_shuf += int(out["ntokens"])
    model.train(was)
    res = {"loss": tot / max(1, n)}
    if n_shuf:
        res.update(ce=ce / n_shuf, ce_other_audio=ce_shuf / n_shuf)
    return res


@torch.inference_mode()
def greedy_wer(model, greedy, feats: dict, recs: dict, sp, device, max_recordings: int = 0
               ) -> tuple[float, list[tuple[str, str, str]]]:
    """Decode whole recordings one by one with `greedy` (see Trainer); pooled WER through
    unique_asr.scoring (the same normaliser and alignment as stage 6), with the normalised
    (id, ref, hyp) rows. A hypothesis stops at twice its reference's token count: a decoder
    that has not stopped by then has failed on that recording, and running it on to a cap per
    second of audio costs minutes per recording on a large vocabulary."""
    from unique_asr.scoring.wer import score_set

    was = model.training
    model.eval()
    items = []
    for rid in sorted(recs)[: max_recordings or None]:
        f = feats[rid]
        ref = " ".join(s.text for s in recs[rid][0])
        n_new = 2 * len(sp.encode(ref)) + 16
        out = greedy(model, f[None].to(device), torch.tensor([f.shape[0]], device=device), n_new)
        items.append((rid, ref, sp.decode(out[0])))
    model.train(was)
    scored = score_set(items)
    return scored.wer, [(r.rec_id, r.ref, r.hyp) for r in scored.recordings]


def fixed_batches(batcher, windows, max_items: int = 8) -> list[dict]:
    """Batches of dev windows (fixed order, small) for validation loss, made by a
    training/data.WindowBatcher like the training batches."""
    from unique_asr.training.data import windows_to_cuts

    cuts = list(windows_to_cuts(windows))
    return [batcher(cuts[i: i + max_items]) for i in range(0, len(cuts), max_items)]
