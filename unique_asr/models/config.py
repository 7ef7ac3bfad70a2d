"""Model hyper-parameters as one dataclass, built from the hydra `model` group.

Kept flat so a checkpoint can store it as a plain dict and compare it key by key against the
config of a later run (see checkpoint.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# keys a config may carry that configure nothing here: `name` (the preset's name), and keys that
# stored configs of older checkpoints hold: attention/attention_cfg (the decoder's attention is
# chosen at run time: models/attention.TrainAttentionConfig, attention/api.SparseConfig) and
# align_* (a training loss this model does not have)
IGNORED_KEYS = {"name", "attention", "attention_cfg", "align_weight", "align_layer",
                "align_heads", "align_width", "align_queries"}


@dataclass
class ModelConfig:
    # frontend
    n_mels: int = 80
    specaug_freq_masks: int = 2
    specaug_freq_width: int = 15
    specaug_time_masks: int = 2
    specaug_time_width_ratio: float = 0.05  # max width of one time mask as a share of length
    specaug_time_width_max: int = 40
    # vocal-tract-length-style warp of the mel axis (training only; frontend.warp_frequency):
    # each window's spectrum is stretched by a factor drawn from [1 - w, 1 + w]; 0 = off
    specaug_freq_warp: float = 0.0
    # sliding mean normalisation (frontend.sliding_cmn): subtract each frame's mean over this many
    # frames around it (training and decoding); 0 = off (global CMVN only)
    cmn_window: int = 0
    # cepstral smoothing (frontend.cepstral_smoother): keep this many DCT coefficients of each raw
    # log-mel frame (training and decoding), dropping the fine structure that resolves the voice's
    # pitch harmonics; 0 = off
    cep_keep: int = 0
    # encoder (conformer)
    enc_dim: int = 144
    enc_layers: int = 4
    enc_heads: int = 4
    enc_ff_mult: int = 4
    enc_conv_kernel: int = 15
    enc_chunk: int = 32          # encoder frames (40 ms each) per attention chunk
    enc_left_chunks: int = 4     # chunks of left context each chunk sees
    subsample: str = "conv2d"    # conv2d | conv1d (both 4x: two 3-tap stride-2 convs)
    subsample_channels: int = 64
    # projector
    stack: int = 2
    # decoder
    dec_dim: int = 256
    dec_layers: int = 2
    dec_heads: int = 4
    dec_kv_heads: int = 1
    dec_ff: int = 704
    rope_base: float = 500000.0
    dec_zero_init: bool = False  # residual branches start at zero (decoder.zero_init_branches)
    max_positions: int = 65536
    # text
    n_text: int = 256            # sentencepiece vocabulary size; set from the tokenizer
    # losses
    ctc_weight: float = 0.3
    ce_weight: float = 1.0
    ctc_max_s: float = 0.0       # >0: CTC only on items up to this many seconds (CPU speed)
    ctc_impl: str = "torch"      # torch | k2 (k2 only when installed)
    enc_zero_init: bool = False  # residual branches start at zero (encoder.zero_init_branches)
    ctc_upsample: int = 1        # CTC frames per encoder frame (models/ctc.py: fast speech, chars)
    # CTC per sentence (training): each sentence of a window is scored on its own stretch of
    # encoder frames (its synthesis times +- ctc_segment_margin_s) instead of the whole window by
    # one CTC: windows of any length train the CTC head (ctc_max_s no longer applies), and many
    # short CTCs cost far less than one long one (speech_llm._ctc_segments_sum)
    ctc_segments: bool = False
    ctc_segment_margin_s: float = 0.16
    # intermediate CTC (Lee & Watanabe 2021): the same CTC head also on the outputs of these
    # encoder blocks (1-based) in training; CTC loss = (1-w) final + w mean(intermediate). Why: a
    # short path from the loss to the lower blocks (4-block encoders leave the CTC plateau within a
    # few hundred steps where 12-block ones do not)
    inter_ctc_layers: list = field(default_factory=list)
    inter_ctc_weight: float = 0.3
    dropout: float = 0.1
    text_input_noise: float = 0.0  # training: share of the decoder's input text tokens replaced
                                   # by random ones (speech_llm._pack), so it must use the audio

    @property
    def task_id(self) -> int:
        return self.n_text

    @property
    def eos_id(self) -> int:
        return self.n_text + 1

    @property
    def vocab_size(self) -> int:
        return self.n_text + 2

    @property
    def ctc_blank(self) -> int:
        return self.n_text

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names - IGNORED_KEYS)
        if unknown:
            raise ValueError(
                f"unknown model config keys {unknown}; valid keys: {sorted(names)} "
                "(fix conf/model/*.yaml or the model.* override)"
            )
        kw = {k: v for k, v in d.items() if k in names}
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.dec_heads % self.dec_kv_heads:
            raise ValueError(
                f"model.dec_heads={self.dec_heads} must be a multiple of "
                f"model.dec_kv_heads={self.dec_kv_heads} (GQA)"
            )
        if self.dec_dim % self.dec_heads or self.enc_dim % self.enc_heads:
            raise ValueError("model.dec_dim/enc_dim must be divisible by the number of heads")
        if (self.dec_dim // self.dec_heads) % 2 or (self.enc_dim // self.enc_heads) % 2:
            raise ValueError("head dims must be even for RoPE")
