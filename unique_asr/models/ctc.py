"""Auxiliary CTC head on the encoder output (torch's CTC loss; k2's when installed and asked).

Upsampling (`model.ctc_upsample` = r): each 40 ms encoder frame emits r CTC frames (one linear
layer to r x classes). Why: the synthetic corpora speak ~18 characters per second, and a
character CTC at 25 frames per second has ~1.3 frames per label (repeats need a blank in
between; 0.7% of sentences are infeasible). r = 2 gives ~2.6 frames per label at no encoder cost.
The tiny preset uses r = 2; larger presets use 1 (egs/synth_longform/RESULTS.md has the
figures).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CTCHead(nn.Module):
    def __init__(self, enc_dim: int, n_classes: int, blank: int, impl: str = "torch",
                 upsample: int = 1):
        super().__init__()
        if upsample < 1:
            raise ValueError(f"model.ctc_upsample={upsample}: use an integer >= 1")
        self.proj = nn.Linear(enc_dim, upsample * n_classes)
        self.n_classes = n_classes
        self.upsample = upsample
        self.blank = blank
        self.impl = impl
        if impl not in ("torch", "k2"):
            raise ValueError(f"model.ctc_impl={impl!r}: use 'torch' or 'k2'")

    def logprobs(self, enc: torch.Tensor) -> torch.Tensor:
        """enc [B, T, D] -> CTC log-probs [B, T * upsample, classes] (float32)."""
        B, T, _D = enc.shape
        logits = self.proj(enc).view(B, T * self.upsample, self.n_classes)
        return logits.float().log_softmax(-1)

    def frames(self, enc_lens: torch.Tensor) -> torch.Tensor:
        """CTC frames of each item given its encoder frames."""
        return enc_lens * self.upsample

    def loss(self, logp, frame_lens, targets, target_lens) -> torch.Tensor:
        """Summed CTC loss over the batch (float32); infeasible utterances give 0 (zero_infinity).
        frame_lens: CTC frames per item (self.frames(enc_lens))."""
        if self.impl == "k2":
            return _k2_ctc_loss(logp, frame_lens, targets, target_lens, self.blank)
        return F.ctc_loss(
            logp.transpose(0, 1), targets, frame_lens, target_lens, blank=self.blank,
            reduction="sum", zero_infinity=True,
        )


def _k2_ctc_loss(logp, frame_lens, targets, target_lens, blank):
    try:
        import k2
    except ImportError as e:
        raise ImportError(
            "model.ctc_impl=k2 but k2 is not installed; install k2 matching your torch or use "
            "model.ctc_impl=torch"
        ) from e
    import k2

    if blank != 0:
        # k2's ctc topology uses blank=0: rotate classes so blank comes first
        order = [blank] + [i for i in range(logp.shape[-1]) if i != blank]
        logp = logp[..., order]
        targets = torch.where(targets < blank, targets + 1, targets)
    seqs = [targets[i, : target_lens[i]].tolist() for i in range(len(target_lens))]
    sup = torch.stack([torch.arange(len(seqs)), torch.zeros(len(seqs), dtype=torch.long),
                       frame_lens.cpu()], 1).int()
    dense = k2.DenseFsaVec(logp, sup)
    graph = k2.ctc_graph(seqs, modified=False, device=logp.device)
    return k2.ctc_loss(graph, dense, output_beam=10, reduction="sum", use_double_scores=True)


def ctc_greedy(logp: torch.Tensor, lens: torch.Tensor, blank: int) -> list[list[int]]:
    """Best path: argmax, merge repeats, drop blanks."""
    best = logp.argmax(-1)
    out = []
    for b in range(best.shape[0]):
        seq = best[b, : lens[b]].tolist()
        prev, hyp = None, []
        for t in seq:
            if t != prev and t != blank:
                hyp.append(t)
            prev = t
        out.append(hyp)
    return out
