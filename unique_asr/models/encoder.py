"""Conformer encoder: conv subsampling 4x, then blocks whose self-attention is limited to chunks
plus a fixed left context.

Chunked attention is computed chunk-wise (queries of a chunk against its window of keys), never
as a T x T matrix, and the subsampling convs can run in time slices; together they bound the
memory of encoding a 60-minute recording to O(T * window).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unique_asr.models.config import ModelConfig
from unique_asr.models.rope import apply_rope, rope_angles

SUBSAMPLING = 4  # fbank frames per encoder frame (ConvSubsampling: two stride-2 convs)


def subsampled_lengths(lens: torch.Tensor) -> torch.Tensor:
    """Frames after two 3x3 stride-2 convs (no padding); ints work too."""
    return ((lens - 1) // 2 - 1) // 2


class ConvSubsampling(nn.Module):
    """Two 3-tap stride-2 convolutions over time: conv2d (time x frequency, the usual ASR
    front-end) or conv1d (mel bins as channels; ~10x cheaper, what `tiny` uses on CPU)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.encoder.subsample_channels
        self.kind = cfg.encoder.subsample
        if self.kind == "conv2d":
            self.conv = nn.Sequential(
                nn.Conv2d(1, c, 3, 2), nn.ReLU(), nn.Conv2d(c, c, 3, 2), nn.ReLU()
            )
            f = ((cfg.n_mels - 1) // 2 - 1) // 2
            self.out = nn.Linear(c * f, cfg.encoder.dim)
        elif self.kind == "conv1d":
            self.conv = nn.Sequential(
                nn.Conv1d(cfg.n_mels, c, 3, 2), nn.GELU(), nn.Conv1d(c, c, 3, 2), nn.GELU()
            )
            self.out = nn.Linear(c, cfg.encoder.dim)
        else:
            raise ValueError(f"model.subsample={self.kind!r}: use conv2d or conv1d")

    def _run(self, x):
        if self.kind == "conv1d":
            return self.out(self.conv(x.transpose(1, 2)).transpose(1, 2))
        y = self.conv(x[:, None])  # [B, C, T', F']
        B, C, T, Fd = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, C * Fd))

    def forward(self, x: torch.Tensor, slice_frames: int = 0) -> torch.Tensor:
        """x [B, T, F] -> [B, T', D]. With slice_frames > 0 the output is computed in slices of that
        many frames (output t reads input 4t..4t+6), giving the same result in bounded memory."""
        T_out = ((x.shape[1] - 1) // 2 - 1) // 2
        if slice_frames <= 0 or T_out <= slice_frames:
            return self._run(x)
        outs = []
        for a in range(0, T_out, slice_frames):
            b = min(a + slice_frames, T_out)
            outs.append(self._run(x[:, 4 * a: 4 * b + 3]))
        return torch.cat(outs, 1)


def chunk_window_mask(lens: torch.Tensor, T: int, chunk: int, left: int) -> torch.Tensor:
    """Boolean mask [B, 1, nC, C, W] (W = (left+1)*chunk): query (chunk c, row i) may see key j of
    its window iff the key is a real frame (0 <= index < len). Padded queries see their whole
    window (their outputs are zeroed later) so no softmax row is empty."""
    nC = -(-T // chunk)
    W = (left + 1) * chunk
    key_idx = (torch.arange(nC, device=lens.device)[:, None] * chunk - left * chunk
               + torch.arange(W, device=lens.device)[None, :])  # [nC, W]
    q_idx = torch.arange(nC * chunk, device=lens.device).view(nC, chunk)
    valid_k = (key_idx[None] >= 0) & (key_idx[None] < lens[:, None, None])  # [B, nC, W]
    pad_q = q_idx[None] >= lens[:, None, None]  # [B, nC, C]
    m = valid_k[:, :, None, :] | pad_q[..., None]
    return m[:, None]


class ChunkedSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.h = cfg.encoder.heads
        self.dh = cfg.encoder.dim // cfg.encoder.heads
        self.qkv = nn.Linear(cfg.encoder.dim, 3 * cfg.encoder.dim)
        self.o = nn.Linear(cfg.encoder.dim, cfg.encoder.dim)
        self.chunk, self.left = cfg.encoder.chunk, cfg.encoder.left_chunks
        self.drop = nn.Dropout(cfg.dropout)
        self.base = 10000.0

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        C, Lc = self.chunk, self.left
        nC = -(-T // C)
        Tp = nC * C
        q, k, v = self.qkv(x).view(B, T, 3, self.h, self.dh).permute(2, 0, 3, 1, 4)
        cos, sin = rope_angles(torch.arange(T, device=x.device), self.dh, self.base)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        q = F.pad(q, (0, 0, 0, Tp - T)).view(B, self.h, nC, C, self.dh)
        # keys/values padded on the left by the context and on the right to whole chunks
        kp = F.pad(k, (0, 0, Lc * C, Tp - T)).unfold(2, (Lc + 1) * C, C).transpose(-1, -2)
        vp = F.pad(v, (0, 0, Lc * C, Tp - T)).unfold(2, (Lc + 1) * C, C).transpose(-1, -2)
        y = F.scaled_dot_product_attention(q, kp, vp, attn_mask=mask,
                                           dropout_p=self.drop.p if self.training else 0.0)
        y = y.reshape(B, self.h, Tp, self.dh)[:, :, :T]
        return self.o(y.transpose(1, 2).reshape(B, T, D))


class ConvModule(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.encoder.dim
        self.norm = nn.LayerNorm(d)
        self.pw1 = nn.Linear(d, 2 * d)
        self.dw = nn.Conv1d(d, d, cfg.encoder.conv_kernel, padding=cfg.encoder.conv_kernel // 2, groups=d)
        self.norm2 = nn.LayerNorm(d)  # LayerNorm, not BatchNorm: padding- and DDP-independent
        self.pw2 = nn.Linear(d, d)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, valid):
        y = F.glu(self.pw1(self.norm(x)), dim=-1) * valid
        y = self.dw(y.transpose(1, 2)).transpose(1, 2)
        return self.drop(self.pw2(F.silu(self.norm2(y))))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.encoder.dim
        self.net = nn.Sequential(
            nn.LayerNorm(d), nn.Linear(d, cfg.encoder.ff_mult * d), nn.SiLU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.encoder.ff_mult * d, d), nn.Dropout(cfg.dropout),
        )

    def forward(self, x):
        return self.net(x)


class ConformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ff1, self.ff2 = FeedForward(cfg), FeedForward(cfg)
        self.norm_att = nn.LayerNorm(cfg.encoder.dim)
        self.att = ChunkedSelfAttention(cfg)
        self.conv = ConvModule(cfg)
        self.norm_out = nn.LayerNorm(cfg.encoder.dim)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, mask, valid):
        x = x + 0.5 * self.ff1(x)
        x = x + self.drop(self.att(self.norm_att(x), mask))
        x = x + self.conv(x, valid)
        x = x + 0.5 * self.ff2(x)
        return self.norm_out(x) * valid


class ConformerEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.subsample = ConvSubsampling(cfg)
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.encoder.layers))
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.encoder.zero_init:
            self.zero_init_branches()

    def zero_init_branches(self) -> None:
        """Zero the last linear layer of every residual branch (feed-forwards, attention, conv),
        so each block starts as the identity (plus its LayerNorm). Why: at initialisation the
        chunked attention averages nearly uniformly over its ~(left+1) x chunk window, and a deep
        stack of such smoothing dilutes the frame-local features a CTC head needs: 12-block
        encoders sat on the CTC blank/unigram plateau where 4-block ones left it."""
        for blk in self.blocks:
            for lin in (blk.ff1.net[-2], blk.ff2.net[-2], blk.att.o, blk.conv.pw2):
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, lens: torch.Tensor, slice_frames: int = 0,
                taps: tuple[int, ...] = (), tapped: list | None = None):
        """x [B, T, n_mels] normalised features -> (enc [B, T', D], enc_lens [B]).
        taps: 1-based block numbers whose outputs are appended to `tapped` (intermediate CTC)."""
        h = self.drop(self.subsample(x, slice_frames))
        enc_lens = subsampled_lengths(lens).clamp_min(0)
        T = h.shape[1]
        valid = (torch.arange(T, device=x.device)[None, :] < enc_lens[:, None])[..., None]
        valid = valid.to(h.dtype)
        h = h * valid
        mask = chunk_window_mask(enc_lens, T, self.cfg.encoder.chunk, self.cfg.encoder.left_chunks)
        for i, blk in enumerate(self.blocks, 1):
            h = blk(h, mask, valid)
            if i in taps and tapped is not None:
                tapped.append(h)
        return h, enc_lens
