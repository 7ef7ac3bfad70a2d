"""CTC on the projector's audio tokens whose output layer is the LLM's own input embedding matrix:
logits = s * cos(x, [E; b]) with E frozen (detached), b a learned blank vector and s a learned
scale (initially 20).

Why: a projector trained by the decoder's cross-entropy alone can memorise a few distinct
sentences without tying its audio tokens to words; this loss pulls each audio token towards the
embedding of the token spoken there, in the space the LLM reads. Its classes are the LLM's token
ids (blank = vocab size), so the same head serves joint CTC/attention decoding.

Cosine, not dot-product, logits: with x E^T the loss sharpens its softmax by growing the audio
tokens' norms (a smoke run with dot products ended with audio tokens 6x the norm of SmolLM2's
embedding rows, inputs the LLM never saw); with the cosine the CE alone sets their scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class EmbeddingCTC(nn.Module):
    def __init__(self, dim: int, vocab: int, embedding: Callable[[], torch.Tensor]):
        super().__init__()
        self.blank_vec = nn.Parameter(torch.randn(dim) * dim ** -0.5)
        self.log_scale = nn.Parameter(torch.tensor(math.log(20.0)))
        self.embedding = embedding   # () -> E [vocab, dim]; a function, so E is not a parameter
        self.n_classes = vocab + 1
        self.blank = vocab
        self.upsample = 1            # one CTC frame per audio token (as CTCHead.upsample)

    def logprobs(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, dim] audio tokens -> CTC log-probs [B, T, vocab + 1] (float32)."""
        # E is frozen: its rows are normalised outside the graph, so the backward does not
        # differentiate through the norms of all vocab rows to reach the blank's
        with torch.no_grad():
            e = F.normalize(self.embedding().to(x.dtype), dim=-1)
        w = torch.cat([e, F.normalize(self.blank_vec.to(x.dtype), dim=-1)[None]])
        cos = F.linear(F.normalize(x, dim=-1), w).float()
        return (cos * self.log_scale.exp()).log_softmax(-1)

    def frames(self, lens: torch.Tensor) -> torch.Tensor:
        return lens

    def loss(self, logp, frame_lens, targets, target_lens) -> torch.Tensor:
        """Summed CTC loss (float32); infeasible items give 0."""
        return F.ctc_loss(logp.transpose(0, 1), targets, frame_lens, target_lens,
                          blank=self.blank, reduction="sum", zero_infinity=True)
