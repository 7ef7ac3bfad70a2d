"""The speech LLM: features -> encoder -> projector -> decoder LLM.

Encoders (model.encoder): conformer (fbank -> normalisation (+SpecAugment) -> Conformer), or
whisper (Whisper log-mel -> pretrained Whisper encoder over 30-s windows, or its cached outputs).
Decoders (model.llm): scratch (our vocabulary: BPE/char ids, a task token, eos = n_text + 1) or
pretrained (its own tokenizer's ids, a text prompt, the tokenizer's end-of-text token).

Sequence layout per utterance, packed to the left (padding only at the end, so causal attention
alone isolates it):  [audio tokens (Ta)] [prompt (P)] [text tokens (U)]  -> targets
[text..., eos] on the last U+1 positions; the scratch decoder's prompt is its one task token.
The prompt follows the audio: it is then the cue right before the transcript, and the audio
starts at position 0 as in the scratch layout (same prefill and page layout for UNIQUE).
Loss: cross-entropy on text + eos, plus CTC: on the encoder (scratch decoder: a linear head over
our vocabulary) or on the projector's audio tokens (pretrained decoder: models/embed_ctc.py).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from unique_asr.attention.api import SparseConfig
from unique_asr.models.attention import TrainAttentionConfig, new_decode_cache
from unique_asr.models.config import ModelConfig
from unique_asr.models.ctc import CTCHead
from unique_asr.models.decoder import Decoder
from unique_asr.models.embed_ctc import EmbeddingCTC
from unique_asr.models.encoder import ConformerEncoder
from unique_asr.models.frontend import GlobalCMVN, SpecAugment, sliding_cmn
from unique_asr.models.projector import (
    Projector,
    audio_token_count,
    audio_token_seconds,
    frames_per_token,
    input_frame_seconds,
)

ENCODE_SLICE_FRAMES = 4096  # subsampling slice (encoder frames) when not training


def _build_encoder(cfg: ModelConfig):
    """(encoder module, its output width)."""
    if cfg.encoder.kind == "whisper":
        from unique_asr.models.loaders.pretrained import load_whisper
        from unique_asr.models.whisper_audio import WhisperAudioEncoder

        whisper = None if cfg.encoder.cached else load_whisper(cfg.encoder.source)
        return WhisperAudioEncoder(cfg.encoder, whisper), cfg.encoder.dim
    return ConformerEncoder(cfg), cfg.encoder.dim


def _build_decoder(cfg: ModelConfig, train_attention):
    """(decoder, tokenizer or None, prompt ids, eos id)."""
    if cfg.llm.kind == "pretrained":
        from unique_asr.models.pretrained_llm import build_pretrained_decoder

        dec, tok = build_pretrained_decoder(cfg.llm, train_attention)
        return dec, tok, tok.encode(cfg.llm.prompt), tok.eos_id
    return Decoder(cfg, train_attention), None, [cfg.task_id], cfg.eos_id


class SpeechLLM(nn.Module):
    """Encoder -> projector -> decoder LLM. train_attention: the decoder's training attention
    (default dense; set_train_attention changes it); decoding picks its attention per cache
    (new_cache's SparseConfig)."""

    def __init__(self, cfg: ModelConfig, train_attention: TrainAttentionConfig | None = None):
        super().__init__()
        self.cfg = cfg
        self.cmvn = GlobalCMVN(cfg.n_mels)  # the conformer's; Whisper normalises its own log-mel
        self.specaug = SpecAugment(cfg)
        self.encoder, enc_dim = _build_encoder(cfg)
        self.decoder, self.tokenizer, prompt, self.eos_id = _build_decoder(cfg, train_attention)
        self.register_buffer("prompt_ids", torch.tensor(prompt, dtype=torch.long),
                             persistent=False)
        self.suppress_ids = tuple(prompt) if self.tokenizer is None else ()
        llm_dim = self.decoder.llm.hidden
        self.projector = Projector(cfg, enc_dim, llm_dim)
        if self.tokenizer is None:
            self.ctc = CTCHead(enc_dim, cfg.n_text + 1, cfg.ctc_blank, cfg.ctc_impl,
                               cfg.ctc_upsample)
            self.ctc_frames_per_s = 1.0 / cfg.encoder.frame_seconds
        else:  # CTC on the audio tokens, through the LLM's own embedding matrix
            self.ctc = EmbeddingCTC(llm_dim, self.decoder.llm.vocab,
                                    lambda: self.decoder.embed.weight)
            self.ctc_frames_per_s = 1.0 / audio_token_seconds(cfg)

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Global CMVN statistics of the training features (the conformer's input only)."""
        if self.cfg.encoder.kind == "conformer":
            self.cmvn.set_stats(mean, std)

    def pretrained_parameter_names(self) -> set[str]:
        """Parameters that start from pretrained weights (Whisper's blocks, the pretrained LLM's
        own weights; not its LoRA adapters, the projector or the CTC head): the optimizer gives
        the trainable ones a smaller learning rate (train.pretrained_lr_scale)."""
        names = set()
        if self.cfg.encoder.kind == "whisper":
            names |= {f"encoder.{n}" for n, _ in self.encoder.named_parameters()}
        if self.tokenizer is not None:
            names |= {f"decoder.{n}" for n, _ in self.decoder.named_parameters()
                      if "lora_" not in n}
        return names

    @property
    def ctc_on_tokens(self) -> bool:
        """The CTC scores the projector's audio tokens (pretrained decoder), not the encoder."""
        return isinstance(self.ctc, EmbeddingCTC)

    @property
    def ctc_blank(self) -> int:
        return self.ctc.blank

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
        """Input feature frames per audio token of the decoder."""
        return frames_per_token(self.cfg)

    @property
    def input_frame_seconds(self) -> float:
        """Seconds per input feature frame (0.02 for cached Whisper outputs, else 0.01)."""
        return input_frame_seconds(self.cfg)

    @property
    def audio_token_seconds(self) -> float:
        return audio_token_seconds(self.cfg)

    def audio_tokens(self, num_frames: int) -> int:
        """Audio tokens this model makes from `num_frames` fbank frames."""
        return audio_token_count(self.cfg, num_frames)

    # ---------------------------------------------------------------- encoder side
    def _encode(self, feats, feat_lens, taps=(), tapped=None):
        if self.cfg.encoder.kind == "whisper":
            return self.encoder(feats, feat_lens)
        x = self.cmvn(self.specaug.warp(feats))
        x = sliding_cmn(x, feat_lens, self.cfg.cmn_window)
        x = self.specaug(x, feat_lens)
        slice_frames = 0 if self.training else ENCODE_SLICE_FRAMES
        return self.encoder(x, feat_lens, slice_frames, taps, tapped)

    def _ctc_sum(self, enc, enc_lens, tokens, token_lens) -> torch.Tensor:
        """Summed CTC loss of encoder outputs enc (only items up to model.ctc_max_s, if set)."""
        # CTC on CPU costs O(frames x tokens) per item: long windows only train the decoder
        keep = enc_lens <= int(self.cfg.ctc_max_s * self.ctc_frames_per_s) if self.cfg.ctc_max_s > 0 else None
        if keep is None or bool(keep.all()):
            return self.ctc.loss(self.ctc.logprobs(enc), self.ctc.frames(enc_lens), tokens,
                                 token_lens)
        if bool(keep.any()):
            return self.ctc.loss(self.ctc.logprobs(enc[keep]), self.ctc.frames(enc_lens[keep]),
                                 tokens[keep], token_lens[keep])
        # keep the head in the graph (DDP expects every parameter to get a grad)
        return 0.0 * next(self.ctc.parameters()).sum()

    def _ctc_segments_sum(self, enc, enc_lens, seg) -> torch.Tensor:
        """Summed CTC loss of every sentence on its own encoder frames (model.ctc_segments).

        seg: row [S], start / end [S] (seconds from the window start), tokens [S, U],
        token_lens [S] (training/data.collate_segments). A sentence's frames are its times
        +- ctc_segment_margin_s (the pauses between sentences are >= 0.2 s), clipped to the
        window; sentences with no frames left are skipped."""
        dev = enc.device
        m = self.cfg.ctc_segment_margin_s
        row = seg["row"].to(dev)
        fps = self.ctc_frames_per_s
        lo = ((seg["start"].to(dev) - m) * fps).floor().long().clamp_min(0)
        hi = torch.minimum(((seg["end"].to(dev) + m) * fps).ceil().long(), enc_lens[row])
        n = hi - lo
        ok = n > 0
        row, lo, n = row[ok], lo[ok], n[ok]
        if row.numel() == 0:
            return 0.0 * next(self.ctc.parameters()).sum()
        W = int(n.max())
        t = (lo[:, None] + torch.arange(W, device=dev)[None, :]).clamp(max=enc.shape[1] - 1)
        pieces = enc[row[:, None], t]                                        # [S, W, D]
        return self.ctc.loss(self.ctc.logprobs(pieces), self.ctc.frames(n),
                             seg["tokens"].to(dev)[ok], seg["token_lens"].to(dev)[ok])

    def encode_with_ctc(self, feats, feat_lens):
        """-> (audio_emb, audio_lens, CTC log-probs [B, Tc, classes], CTC frame counts [B])."""
        enc, enc_lens = self._encode(feats, feat_lens)
        audio, audio_lens = self.projector(enc, enc_lens)
        h, h_lens = (audio, audio_lens) if self.ctc_on_tokens else (enc, enc_lens)
        return audio, audio_lens, self.ctc.logprobs(h), self.ctc.frames(h_lens)

    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor):
        """feats [B,T,n_mels] raw fbank -> (audio_emb [B,Ta,dec_dim], audio_lens [B])."""
        enc, enc_lens = self._encode(feats, feat_lens)
        return self.projector(enc, enc_lens)

    # ---------------------------------------------------------------- training
    def _pack(self, audio, audio_lens, tokens, token_lens):
        """Left-packed decoder inputs [B,L,D] and targets [B,L] (-100 where no loss)."""
        _B, Ta_max, _D = audio.shape
        dev = audio.device
        P = self.prompt_ids.numel()
        L = int((audio_lens + token_lens).max()) + P
        pos = torch.arange(L, device=dev)[None, :]
        j = pos - audio_lens[:, None]  # index within [prompt..., text...]
        is_audio = j < 0
        tok_idx = (j - P).clamp(0, max(tokens.shape[1] - 1, 0))
        text = tokens.gather(1, tok_idx) if tokens.shape[1] else torch.zeros_like(tok_idx)
        prompt = self.prompt_ids[j.clamp(0, P - 1)]
        inp_tok = torch.where((j >= 0) & (j < P), prompt, text)
        last = P - 1 + token_lens[:, None]  # the last input position: it predicts eos
        inp_tok = torch.where(is_audio | (j > last), torch.zeros_like(inp_tok), inp_tok)
        if self.training and self.cfg.text_input_noise > 0:
            # replace a share of the decoder's input text (never its targets) by random tokens:
            # the text history alone then predicts the next token worse, the audio does not
            is_text = (j >= P) & (j <= last)
            noisy = is_text & (torch.rand(inp_tok.shape, device=dev) < self.cfg.text_input_noise)
            inp_tok = torch.where(noisy, torch.randint_like(inp_tok, self.cfg.n_text), inp_tok)
        x = self.decoder.embed(inp_tok)
        a = F.pad(audio, (0, 0, 0, max(0, L - Ta_max)))[:, :L]
        x = torch.where(is_audio[..., None], a.to(x.dtype), x)
        # target at position p is the token at p+1: text[j - P + 1], then eos at j == last
        tgt_idx = (j - P + 1).clamp(0, max(tokens.shape[1] - 1, 0))
        tgt = tokens.gather(1, tgt_idx) if tokens.shape[1] else torch.zeros_like(tgt_idx)
        tgt = torch.where(j == last, torch.full_like(tgt, self.eos_id), tgt)
        tgt = torch.where((j < P - 1) | (j > last), torch.full_like(tgt, -100), tgt)
        return x, tgt

    def forward(self, feats, feat_lens, tokens, token_lens, ce_weight: float | None = None,
                ctc_segments: dict | None = None) -> dict:
        """Returns loss (per target token of this batch) and the sums a trainer can normalise
        globally: ce_sum, ctc_sum, ntokens (text + eos tokens). ce_weight overrides the config's
        (the trainer's CTC warm-up passes 0: a decoder with trainable weights stays in the graph
        with zero gradient, as DDP expects a gradient for every parameter; a frozen one is
        skipped).
        ctc_segments: per-sentence CTC targets (model.ctc_segments; without them the CTC scores
        whole windows)."""
        taps = tuple(self.cfg.inter_ctc_layers) if self.training and self.cfg.ctc_weight > 0 else ()
        if self.cfg.encoder.kind != "conformer":
            taps = ()
        tapped: list[torch.Tensor] = []
        enc, enc_lens = self._encode(feats, feat_lens, taps, tapped)
        audio, audio_lens = self.projector(enc, enc_lens)
        if self.ctc_on_tokens:
            enc, enc_lens = audio, audio_lens
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
        ce_w = self.cfg.ce_weight if ce_weight is None else ce_weight
        if ce_w == 0 and not (dist.is_available() and dist.is_initialized()
                              and any(p.requires_grad for p in self.decoder.parameters())):
            # CTC alone (a frozen decoder, or a CTC warm-up): nothing of the decoder learns, so
            # it is not run (a 135M LLM is ~3/4 of a CPU step); the logged CE reads 0 meanwhile.
            # Under DDP a trainable decoder still runs: its parameters must get (zero) grads
            ce_sum = ctc_final.new_zeros(())
            ntokens = (token_lens + 1).sum()
        else:
            x, tgt = self._pack(audio, audio_lens, tokens, token_lens)
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
                  sparse: SparseConfig | None = None, pool_pages: int | None = None):
        """A decoding KV cache for `batch` sequences of up to `max_len` tokens; `sparse` picks
        the decode attention (default dense), pool_pages caps a paged cache's page pool
        (decode.kv_pool_pages; None: room for every row at max_len)."""
        p = next(self.parameters())
        llm = self.decoder.llm
        # max_len counts one prompt token (the task token): longer prompts take their extra slots
        max_len += self.prompt_ids.numel() - 1
        return new_decode_cache(llm.layers, batch, max_len, llm.kv_heads, llm.head_dim,
                                device or p.device, dtype or p.dtype, sparse, pool_pages)

    def prefill(self, audio_emb, audio_lens, cache) -> torch.Tensor:
        """Dense prefill of [audio][prompt]; returns next-token logits [B, vocab] (float32)."""
        B, Ta, _D = audio_emb.shape
        P = self.prompt_ids.numel()
        x = F.pad(audio_emb, (0, 0, 0, P)).to(self.decoder.embed.weight.dtype).clone()
        rows = torch.arange(B, device=x.device)
        prompt = self.decoder.embed(self.prompt_ids.to(x.device)).to(x.dtype)
        for i in range(P):
            x[rows, audio_lens + i] = prompt[i]
        lens = audio_lens + P
        h = self.decoder.hidden(x, torch.arange(Ta + P, device=x.device), cache, "prefill", lens)
        cache.set_lens(lens)
        return self.decoder.logits(h[rows, lens - 1]).float()

    def decode_step(self, tokens: torch.Tensor, cache) -> torch.Tensor:
        """One token per sequence at position cache.lens[b]; returns logits [B, vocab]."""
        return self.decoder.decode_step(tokens, cache)
