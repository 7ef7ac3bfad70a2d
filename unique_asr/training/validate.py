"""Validation during training: loss on fixed dev windows and greedy WER on whole dev recordings."""

from __future__ import annotations

import torch

from unique_asr.training.data import FRAME_SHIFT, collate


@torch.no_grad()
def valid_loss(model, batches, device, autocast) -> float:
    was = model.training
    model.eval()
    tot, n = 0.0, 0
    for b in batches:
        with autocast():
            out = model(b["feats"].to(device), b["feat_lens"].to(device),
                        b["tokens"].to(device), b["token_lens"].to(device))
        tot += float(out["loss_sum"])
        n += int(out["ntokens"])
    model.train(was)
    return tot / max(1, n)


def simple_greedy(model, feats, feat_lens, max_new_tokens: int) -> list[list[int]]:
    """Minimal batched greedy search (fallback when unique_asr.decoding is not importable)."""
    audio, audio_lens = model.encode(feats, feat_lens)
    B = audio.shape[0]
    cache = model.new_cache(B, audio.shape[1] + 1 + max_new_tokens)
    logits = model.prefill(audio, audio_lens, cache)
    hyps = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=audio.device)
    for _ in range(max_new_tokens):
        logits[:, model.cfg.task_id] = float("-inf")
        tok = logits.argmax(-1)
        for b in range(B):
            if not done[b]:
                if int(tok[b]) == model.cfg.eos_id:
                    done[b] = True
                else:
                    hyps[b].append(int(tok[b]))
        if bool(done.all()):
            break
        logits = model.decode_step(tok, cache)
    return hyps


def greedy_fn():
    try:
        from unique_asr.decoding import greedy_decode

        return greedy_decode
    except ImportError:
        return simple_greedy


@torch.inference_mode()
def greedy_wer(model, feats: dict, recs: dict, sp, device, max_recordings: int = 0,
               tokens_per_second: float = 6.0) -> tuple[float, list[tuple[str, str, str]]]:
    """Decode whole recordings one by one; pooled WER through unique_asr.scoring (the same
    normaliser and alignment as stage 6), with the normalised (id, ref, hyp) rows."""
    from unique_asr.scoring.wer import score_set

    was = model.training
    model.eval()
    greedy = greedy_fn()
    items = []
    for rid in sorted(recs)[: max_recordings or None]:
        f = feats[rid]
        n_new = int(f.shape[0] * FRAME_SHIFT * tokens_per_second) + 16
        out = greedy(model, f[None].to(device), torch.tensor([f.shape[0]], device=device), n_new)
        items.append((rid, " ".join(s.text for s in recs[rid][0]), sp.decode(out[0])))
    model.train(was)
    scored = score_set(items)
    return scored.wer, [(r.rec_id, r.ref, r.hyp) for r in scored.recordings]


def fixed_batches(feats: dict, windows, sp, max_items: int = 8) -> list[dict]:
    """Batches of dev windows (fixed order, small) for validation loss."""
    out, cur = [], []
    for w in windows:
        a = round(w.start / FRAME_SHIFT)
        x = feats[w.rec_id][a: a + round(w.duration / FRAME_SHIFT)]
        cur.append((x, torch.tensor(sp.encode(w.text), dtype=torch.long), w.rec_id))
        if len(cur) == max_items:
            out.append(collate(*map(list, zip(*cur))))
            cur = []
    if cur:
        out.append(collate(*map(list, zip(*cur))))
    return out
