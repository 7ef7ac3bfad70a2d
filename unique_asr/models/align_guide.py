"""Alignment guide for the decoder: one attention head is taught where the audio of the next
text token is (guided attention, as used to bootstrap attention in TTS).

Why: a decoder trained from scratch on [audio][text] can lower its loss as a character LM alone;
measured on the tiny recipe, after 950 joint steps its loss was the same with the audio of
another utterance (2.108 vs 2.110 nats/char) while the encoder's CTC head had learnt to listen.
The guide gives one head of one layer a direct target: for a text query predicting token u, the
attention mass on the audio tokens within `width` of u's coarse position (from the sentence times
of the training window, data.token_audio_index). Only a few query rows per sequence are scored,
so it costs [B, heads, queries, L], never L x L. Training only; decoding is unchanged.
"""

from __future__ import annotations

import math

import torch


def alignment_loss(q: torch.Tensor, k: torch.Tensor, audio_lens: torch.Tensor,
                   token_lens: torch.Tensor, align: torch.Tensor, width: float, heads: int,
                   n_queries: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over scored queries of -log(attention mass inside the target band), and the count.

    q [B,H,L,D], k [B,Hkv,L,D]: post-RoPE queries/keys of the guided layer (left-packed
    sequences [audio][task][text]); align [B,U]: audio-token position of each text token (-1
    unknown). The first `heads` query heads are guided (each with its GQA key/value head).
    """
    B, H, L, D = q.shape
    group = H // k.shape[1]
    heads = max(1, min(heads, H))
    U = align.shape[1]
    nq = max(1, min(n_queries, U))
    dev = q.device
    i = torch.arange(nq, device=dev)
    step = token_lens.clamp_min(nq).double() / nq  # evenly spaced text tokens per sequence
    u = (i[None].double() * step[:, None]).long().clamp(max=U - 1)  # [B, nq]
    a = align.gather(1, u)
    valid = (i[None] < token_lens[:, None]) & (a >= 0)
    pos = (audio_lens[:, None] + u).clamp(max=L - 1)  # the position that predicts token u
    qs = q[:, :heads].gather(2, pos[:, None, :, None].expand(B, heads, nq, D)).float()
    ks = k[:, [h // group for h in range(heads)]].float()
    logits = qs @ ks.transpose(-1, -2) / math.sqrt(D)  # [B, heads, nq, L]
    keys = torch.arange(L, device=dev)
    causal = keys[None, None] <= pos[:, :, None]  # [B, nq, L]
    logp = torch.log_softmax(logits.masked_fill(~causal[:, None], float("-inf")), -1)
    band = ((keys[None, None] - a[:, :, None]).abs() <= width) & (
        keys[None, None] < audio_lens[:, None, None])
    valid = valid & band.any(-1)
    inband = torch.logsumexp(logp.masked_fill(~band[:, None], float("-inf")), -1)  # [B,heads,nq]
    n = valid.sum()
    if int(n) == 0:
        return logits.sum() * 0.0, n
    loss = -(inband.masked_fill(~valid[:, None], 0.0).sum(1) / heads).sum() / n
    return loss, n
