"""The speech LLM: fbank -> normalisation (+SpecAugment) -> conformer -> projector -> decoder.

Sequence layout per utterance, packed to the left (padding only at the end, so causal attention
alone isolates it):  [audio tokens (Ta)] [task] [text tokens (U)]  -> targets [text..., eos]
on the last U+1 positions. Loss: cross-entropy on text + eos, plus CTC on the encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unique_asr.attention.api import SparseConfig
from unique_asr.models.attention import TrainAttentionConfig, new_decode_cache
from unique_asr.models.config import ModelConfig
from unique_asr.models.ctc import CTCHead
from unique_asr.models.decoder import Decoder
from unique_asr.models.encoder import SUBSAMPLING, ConformerEncoder
from unique_asr.models.frontend import GlobalCMVN, SpecAugment, sliding_cmn
from unique_asr.models.projector import (
    Projector,
    audio_token_count,
    audio_token_seconds,
    frames_per_token,
)

ENCODE_SLICE_FRAMES = 4096  # subsampling slice (encoder frames) when not training
ENC_FRAMES_PER_S = 100 // SUBSAMPLING  # encoder frames per second (of 10 ms fbank frames)


class SpeechLLM(nn.Module):
    """Encoder -> projector -> decoder LLM. train_attention: the decoder's training attention
    (default dense; set_train_attention changes it); decoding picks its attention per cache
    (new_cache's SparseConfig)."""

    def __init__(self, cfg: ModelConfig, train_attention: TrainAttentionConfig | None = None):
        super().__init__()
        self.cfg = cfg
        self.cmvn = GlobalCMVN(cfg.n_mels)
        self.specaug = SpecAugment(cfg)
        self.encoder = ConformerEncoder(cfg)
        self.ctc = CTCHead(cfg.encoder.dim, cfg.n_text + 1, cfg.ctc_blank, cfg.ctc_impl,
                           cfg.ctc_upsample)
        self.projector = Projector(cfg)
        self.decoder = Decoder(cfg, train_attention)

    @property
    def train_attention(self) -> TrainAttentionConfig:
        return self.decoder.train_attention

    def set_train_attention(self, cfg: TrainAttentionConfig) -> None:
        """The decoder attends with `cfg` in training from now on (e.g. a dense checkpoint
        fine-tuned with unique_soft, finished with unique_hard)."""
        self.decoder.set_train_attention(cfg)

    # ---------------------------------------------------------------- audio-token geometry
    @property
    def frames_per_token(self) -> int:
        """Fbank frames (10 ms) per audio token of the decoder."""
        return frames_per_token(self.cfg)

    @property
    def audio_token_seconds(self) -> float:
        return audio_token_seconds(self.cfg)

    def audio_tokens(self, num_frames: int) -> int:
        """Audio tokens this model makes from `num_frames` fbank frames."""
        return audio_token_count(self.cfg, num_frames)

    # ---------------------------------------------------------------- encoder side
    def _encode(self, feats, feat_lens, taps=(), tapped=None):
        x = self.cmvn(self.specaug.warp(feats))
        x = sliding_cmn(x, feat_lens, self.cfg.cmn_window)
        x = self.specaug(x, feat_lens)
        slice_frames = 0 if self.training else ENCODE_SLICE_FRAMES
        return self.encoder(x, feat_lens, slice_frames, taps, tapped)

    def _ctc_sum(self, enc, enc_lens, tokens, token_lens) -> torch.Tensor:
        """Summed CTC loss of encoder outputs enc (only items up to model.ctc_max_s, if set)."""
        # CTC on CPU costs O(frames x tokens) per item: long windows only train the decoder
        keep = enc_lens <= int(self.cfg.ctc_max_s * ENC_FRAMES_PER_S) if self.cfg.ctc_max_s > 0 else None
        if keep is None or bool(keep.all()):
            return self.ctc.loss(self.ctc.logprobs(enc), self.ctc.frames(enc_lens), tokens,
                                 token_lens)
        if bool(keep.any()):
            return self.ctc.loss(self.ctc.logprobs(enc[keep]), self.ctc.frames(enc_lens[keep]),
                                 tokens[keep], token_lens[keep])
        # keep the head in the graph (DDP expects every parameter to get a grad)
        return 0.0 * self.ctc.proj.weight.sum()

    def _ctc_segments_sum(self, enc, enc_lens, seg) -> torch.Tensor:
        """Summed CTC loss of every sentence on its own encoder frames (model.ctc_segments).

        seg: row [S], start / end [S] (seconds from the window start), tokens [S, U],
        token_lens [S] (training/data.collate_segments). A sentence's frames are its times
        +- ctc_segment_margin_s (the pauses between sentences are >= 0.2 s), clipped to the
        window; sentences with no frames left are skipped."""
        dev = enc.device
        m = self.cfg.ctc_segment_margin_s
        row = seg["row"].to(dev)
        lo = ((seg["start"].to(dev) - m) * ENC_FRAMES_PER_S).floor().long().clamp_min(0)
        hi = torch.minimum(((seg["end"].to(dev) + m) * ENC_FRAMES_PER_S).ceil().long(), enc_lens[row])
        n = hi - lo
        ok = n > 0
        row, lo, n = row[ok], lo[ok], n[ok]
        if row.numel() == 0:
            return 0.0 * self.ctc.proj.weight.sum()
        W = int(n.max())
        t = (lo[:, None] + torch.arange(W, device=dev)[None, :]).clamp(max=enc.shape[1] - 1)
        pieces = enc[row[:, None], t]                                        # [S, W, D]
        return self.ctc.loss(self.ctc.logprobs(pieces), self.ctc.frames(n),
                             seg["tokens"].to(dev)[ok], seg["token_lens"].to(dev)[ok])

    def encode_with_ctc(self, feats, feat_lens):
        """-> (audio_emb, audio_lens, CTC log-probs [B, Tc, classes], CTC frame counts [B])."""
        enc, enc_lens = self._encode(feats, feat_lens)
        audio, audio_lens = self.projector(enc, enc_lens)
        return audio, audio_lens, self.ctc.logprobs(enc), self.ctc.frames(enc_lens)

    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor):
        """feats [B,T,n_mels] raw fbank -> (audio_emb [B,Ta,dec_dim], audio_lens [B])."""
        enc, enc_lens = self._encode(feats, feat_lens)
        return self.projector(enc, enc_lens)

    # ---------------------------------------------------------------- training
    def _pack(self, audio, audio_lens, tokens, token_lens):
        """Left-packed decoder inputs [B,L,D] and targets [B,L] (-100 where no loss)."""
        _B, Ta_max, _D = audio.shape
        dev = audio.device
        L = int((audio_lens + token_lens).max()) + 1
        pos = torch.arange(L, device=dev)[None, :]
        j = pos - audio_lens[:, None]  # index within [task, text...]
        is_audio = j < 0
        tok_idx = (j - 1).clamp(0, max(tokens.shape[1] - 1, 0))
        text = tokens.gather(1, tok_idx) if tokens.shape[1] else torch.zeros_like(tok_idx)
        inp_tok = torch.where(j == 0, torch.full_like(text, self.cfg.task_id), text)
        inp_tok = torch.where(is_audio | (j > token_lens[:, None]), torch.zeros_like(inp_tok),
                              inp_tok)
        if self.training and self.cfg.text_input_noise > 0:
            # replace a share of the decoder's input text (never its targets) by random tokens:
            # the text history alone then predicts the next token worse, the audio does not
            is_text = (j >= 1) & (j <= token_lens[:, None])
            noisy = is_text & (torch.rand(inp_tok.shape, device=dev) < self.cfg.text_input_noise)
            inp_tok = torch.where(noisy, torch.randint_like(inp_tok, self.cfg.n_text), inp_tok)
        x = self.decoder.embed(inp_tok)
        a = F.pad(audio, (0, 0, 0, max(0, L - Ta_max)))[:, :L]
        x = torch.where(is_audio[..., None], a.to(x.dtype), x)
        # target at position p is the token at p+1: text[j], then eos at j == U
        tgt_idx = j.clamp(0, max(tokens.shape[1] - 1, 0))
        tgt = tokens.gather(1, tgt_idx) if tokens.shape[1] else torch.zeros_like(tgt_idx)
        tgt = torch.where(j == token_lens[:, None], torch.full_like(tgt, self.cfg.eos_id), tgt)
        tgt = torch.where((j < 0) | (j > token_lens[:, None]), torch.full_like(tgt, -100), tgt)
        return x, tgt

    def forward(self, feats, feat_lens, tokens, token_lens, ce_weight: float | None = None,
                ctc_segments: dict | None = None) -> dict:
        """Returns loss (per target token of this batch) and the sums a trainer can normalise
        globally: ce_sum, ctc_sum, ntokens (text + eos tokens). ce_weight overrides the config's
        (the trainer's CTC warm-up passes 0: the decoder stays in the graph with zero gradient).
        ctc_segments: per-sentence CTC targets (model.ctc_segments; without them the CTC scores
        whole windows)."""
        taps = tuple(self.cfg.inter_ctc_layers) if self.training and self.cfg.ctc_weight > 0 else ()
        tapped: list[torch.Tensor] = []
        enc, enc_lens = self._encode(feats, feat_lens, taps, tapped)
        ctc_sum = ctc_final = enc.new_zeros((), dtype=torch.float32)
        if self.cfg.ctc_weight > 0:
            seg = ctc_segments if self.cfg.ctc_segments else None

            def ctc_of(h):
                if seg is not None:
                    return self._ctc_segments_sum(h, enc_lens, seg)
                return self._ctc_sum(h, enc_lens, tokens, token_lens)
            ctc_sum = ctc_final = ctc_of(enc)
            if tapped:  # the loss mixes in the intermediate CTC; the logged ctc is the final one
                w = self.cfg.inter_ctc_weight
                inter = sum(ctc_of(h) for h in tapped)
                ctc_sum = (1 - w) * ctc_final + w * inter / len(tapped)
        audio, audio_lens = self.projector(enc, enc_lens)
        x, tgt = self._pack(audio, audio_lens, tokens, token_lens)
        ce_w = self.cfg.ce_weight if ce_weight is None else ce_weight
        h = self.decoder.hidden(x, torch.arange(x.shape[1], device=x.device))
        sel = tgt >= 0
        logits = self.decoder.logits(h[sel]).float()
        ce_sum = F.cross_entropy(logits, tgt[sel], reduction="sum")
        ntokens = sel.sum()
        total = ce_w * ce_sum + self.cfg.ctc_weight * ctc_sum
        return {
            "loss": total / ntokens.clamp_min(1), "loss_sum": total, "ce_sum": ce_sum.detach(),
            "ctc_sum": ctc_final.detach(), "ntokens": ntokens,
            "ce_loss": (ce_sum / ntokens.clamp_min(1)).detach(),
            "ctc_loss": (ctc_final / ntokens.clamp_min(1)).detach(),
        }

    # ---------------------------------------------------------------- decoding
    def new_cache(self, batch: int, max_len: int, device=None, dtype=None,
                  sparse: SparseConfig | None = None):
        """A decoding KV cache for `batch` sequences of up to `max_len` tokens; `sparse` picks
        the decode attention (default dense)."""
        p = next(self.parameters())
        return new_decode_cache(self.cfg.llm.layers, batch, max_len, self.cfg.llm.kv_heads,
                                self.cfg.llm.dim // self.cfg.llm.heads, device or p.device,
                                dtype or p.dtype, sparse)

    def prefill(self, audio_emb, audio_lens, cache) -> torch.Tensor:
        """Dense prefill of [audio][task]; returns next-token logits [B, vocab] (float32)."""
        B, Ta, _D = audio_emb.shape
        L = Ta + 1
        x = F.pad(audio_emb, (0, 0, 0, 1)).to(self.decoder.embed.weight.dtype)
        task = self.decoder.embed.weight[self.cfg.task_id]
        x = x.clone()
        x[torch.arange(B, device=x.device), audio_lens] = task
        lens = audio_lens + 1
        h = self.decoder.hidden(x, torch.arange(L, device=x.device), cache, "prefill", lens)
        cache.set_lens(lens)
        return self.decoder.logits(h[torch.arange(B, device=x.device), audio_lens]).float()

    def decode_step(self, tokens: torch.Tensor, cache) -> torch.Tensor:
        """One token per sequence at position cache.lens[b]; returns logits [B, vocab]."""
        x = self.decoder.embed(tokens)[:, None]
        h = self.decoder.hidden(x, cache.lens[:, None], cache, "step")
        cache.advance(1)
        return self.decoder.logits(h[:, 0]).float()
