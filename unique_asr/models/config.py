"""Model hyper-parameters: a ModelConfig with one encoder class and one LLM class picked by name
(ESPnet's pick-a-class style). Each class is a dataclass whose defaults are written once here;
conf/model/*.yaml presets only override them.

    model.encoder: conformer (from scratch, fbank input) | whisper (pretrained, Whisper log-mel
                   input, or its cached outputs)
    model.llm:     scratch (a LLaMA-style decoder trained from scratch) | pretrained (a
                   LLaMA-family checkpoint with its own tokenizer; frozen, LoRA or full)

A checkpoint stores `to_dict()` and a later run rebuilds it with `from_dict()`, which names any
unknown key and the valid ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

FEATURE_FRAME_SECONDS = 0.01      # one input feature frame: fbank or log-mel, 10 ms hop


@dataclass
class ConformerConfig:
    """Chunked-attention Conformer over 80-dim fbank with 4x convolutional subsampling."""
    kind: str = "conformer"
    dim: int = 144
    layers: int = 4
    heads: int = 4
    ff_mult: int = 4
    conv_kernel: int = 15
    chunk: int = 32               # encoder frames (40 ms each) per attention chunk
    left_chunks: int = 4          # chunks of left context each chunk sees
    subsample: str = "conv1d"     # conv2d | conv1d (both 4x: two 3-tap stride-2 convs)
    subsample_channels: int = 256
    zero_init: bool = True        # residual branches start at zero (encoder.zero_init_branches):
                                  # deep encoders leave the CTC plateau

    frame_seconds = 0.04          # one encoder frame: 4 fbank frames of 10 ms
    input_frame_seconds = FEATURE_FRAME_SECONDS
    subsampling = 4               # input frames per encoder frame

    def validate(self) -> None:
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"model.encoder.dim={self.dim} must be divisible by "
                             f"model.encoder.heads={self.heads} into even head dims (RoPE)")
        if self.subsample not in ("conv2d", "conv1d"):
            raise ValueError(f"model.encoder.subsample={self.subsample!r}: use conv2d or conv1d")


@dataclass
class ScratchLLMConfig:
    """LLaMA-style decoder (RMSNorm, RoPE, SwiGLU, GQA, tied embeddings) trained from scratch."""
    kind: str = "scratch"
    dim: int = 256
    layers: int = 2
    heads: int = 4
    kv_heads: int = 1
    ff: int = 704
    rope_base: float = 500000.0
    max_positions: int = 65536
    zero_init: bool = False       # residual branches start at zero (decoder.zero_init_branches)

    def validate(self) -> None:
        if self.heads % self.kv_heads:
            raise ValueError(f"model.llm.heads={self.heads} must be a multiple of "
                             f"model.llm.kv_heads={self.kv_heads} (GQA)")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"model.llm.dim={self.dim} must be divisible by "
                             f"model.llm.heads={self.heads} into even head dims (RoPE)")


@dataclass
class WhisperEncoderConfig:
    """A pretrained Whisper encoder over Whisper's own log-mel (80 bins, 10 ms hop, its own
    normalisation), run over 30-s windows; 20 ms output frames. With `cached`, the model's input
    features are this encoder's outputs, stored by stage 2 (frozen encoder only): CPU training
    then never runs the encoder."""
    kind: str = "whisper"
    source: str = "whisper-base"  # whisper-base | whisper-tiny.en | a CTranslate2 directory, an
                                  # openai .pt file or a Hugging Face directory
    dim: int = 512                # the checkpoint's width (checked when loading)
    trainable_layers: int = 0     # 0: frozen; N: the top N blocks (and the final norm) train
    cached: bool = False          # input features are the frozen encoder's outputs (stage 2)

    frame_seconds = 0.02          # one encoder frame

    @property
    def input_frame_seconds(self) -> float:
        return self.frame_seconds if self.cached else FEATURE_FRAME_SECONDS

    @property
    def subsampling(self) -> int:
        return 1 if self.cached else 2

    @property
    def input_dim(self) -> int:
        return self.dim if self.cached else 80

    def validate(self) -> None:
        if self.trainable_layers < 0:
            raise ValueError(f"model.encoder.trainable_layers={self.trainable_layers} must be >= 0")
        if self.cached and self.trainable_layers:
            raise ValueError("model.encoder.cached=true needs a frozen encoder "
                             f"(model.encoder.trainable_layers=0, got {self.trainable_layers})")


LORA_TARGETS = ("q", "kv", "o", "w1", "w2", "w3")  # attention q, k/v, out; SwiGLU gate, down, up


@dataclass
class PretrainedLLMConfig:
    """A pretrained LLaMA-family decoder with its own tokenizer, which replaces the char/BPE
    targets: text in and out goes through it, it ends with the tokenizer's end-of-text token, and
    a text prompt follows the audio tokens."""
    kind: str = "pretrained"
    source: str = "smollm2-135m"  # smollm2-135m (packaged GGUF) | a .gguf file | a Hugging Face
                                  # directory
    finetune: str = "frozen"      # frozen | lora | full
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_targets: list = field(default_factory=lambda: list(LORA_TARGETS))
    rope_theta: float = 0.0       # 0: the checkpoint's
    prompt: str = "Transcription:\n"  # follows the audio tokens; the transcript follows it
    max_positions: int = 8192     # the checkpoint's context (long-form splitting reads it)
    # dtype of the frozen pretrained weights (LoRA adapters and the projector stay float32):
    # bfloat16 halves their memory and speeds a CPU step up (no autocast there)
    dtype: str = "float32"        # float32 | bfloat16

    def validate(self) -> None:
        if self.finetune not in ("frozen", "lora", "full"):
            raise ValueError(f"model.llm.finetune={self.finetune!r}: use frozen, lora or full")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"model.llm.dtype={self.dtype!r}: use float32 or bfloat16")
        if self.dtype != "float32" and self.finetune == "full":
            raise ValueError("model.llm.dtype=bfloat16 holds frozen weights; with "
                             "model.llm.finetune=full every weight trains: use float32")
        bad = sorted(set(self.lora_targets) - set(LORA_TARGETS))
        if bad:
            raise ValueError(f"model.llm.lora_targets: unknown {bad}; choose from "
                             f"{', '.join(LORA_TARGETS)}")
        if self.finetune == "lora" and self.lora_rank < 1:
            raise ValueError(f"model.llm.lora_rank={self.lora_rank} must be >= 1")
        if not self.prompt:
            raise ValueError("model.llm.prompt must not be empty (the decoder's cue to start)")


ENCODERS: dict[str, type] = {"conformer": ConformerConfig, "whisper": WhisperEncoderConfig}
LLMS: dict[str, type] = {"scratch": ScratchLLMConfig, "pretrained": PretrainedLLMConfig}
# ModelConfig's nested parts: their config classes by kind, and the kind when none is given
PARTS: dict[str, tuple[dict[str, type], str]] = {"encoder": (ENCODERS, "conformer"),
                                                 "llm": (LLMS, "scratch")}


@dataclass
class ModelConfig:
    name: str = "tiny"
    # frontend: fbank -> global CMVN -> sliding CMN -> SpecAugment
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
    cmn_window: int = 1000
    encoder: Any = field(default_factory=ConformerConfig)
    stack: int = 2                # projector: encoder frames stacked into one audio token
    llm: Any = field(default_factory=ScratchLLMConfig)
    n_text: int = 256             # text vocabulary size; set from the tokenizer
    # losses
    ce_weight: float = 1.0
    ctc_weight: float = 0.5
    ctc_max_s: float = 60.0       # >0: CTC only on items up to this many seconds (CPU speed)
    ctc_impl: str = "torch"       # torch | k2 (k2 only when installed)
    ctc_upsample: int = 2         # CTC frames per encoder frame (models/ctc.py: fast speech, chars)
    # CTC per sentence (training): each sentence of a window is scored on its own stretch of
    # encoder frames (its times +- ctc_segment_margin_s) instead of the whole window by one CTC:
    # windows of any length train the CTC head, and many short CTCs cost less than one long one
    ctc_segments: bool = True
    ctc_segment_margin_s: float = 0.16
    # intermediate CTC: the same CTC head also on the outputs of these encoder blocks (1-based)
    # in training; CTC loss = (1-w) final + w mean(intermediate): a short path from the loss to
    # the lower blocks of deep encoders
    inter_ctc_layers: list = field(default_factory=list)
    inter_ctc_weight: float = 0.3
    dropout: float = 0.0
    text_input_noise: float = 0.0  # training: share of the decoder's input text tokens replaced
                                   # by random ones (speech_llm._pack), so it must use the audio

    @property
    def input_dim(self) -> int:
        """Width of the model's input features (fbank bins, Whisper mel bins, or the cached
        encoder outputs)."""
        return getattr(self.encoder, "input_dim", self.n_mels)

    @property
    def feature_set(self) -> str:
        """Name of the stage-2 features this model reads (their directory under data/)."""
        enc = self.encoder
        if enc.kind != "whisper":
            return "fbank"
        if not enc.cached:
            return "whisper_mel"
        name = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in
                       enc.source.rstrip("/").rsplit("/", 1)[-1])
        return f"whisper_enc_{name}"

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
        d = dict(d)
        if _is_flat(d):
            raise ValueError("this model config is flat (enc_dim, dec_dim, ...): it was written by "
                             "an older unique_asr, whose checkpoints do not load here; the model "
                             "config is now nested (model.encoder.*, model.llm.*), see "
                             "conf/model/*.yaml")
        parts = {part: _pick(registry, d.pop(part, None) or {}, f"model.{part}", default)
                 for part, (registry, default) in PARTS.items()}
        check_keys(cls, d, "model")
        cfg = cls(**d, **parts)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        self.encoder.validate()
        self.llm.validate()
        if self.stack < 1:
            raise ValueError(f"model.stack={self.stack} must be >= 1")


def known_keys_only(d: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A stored model config without the keys this version's ModelConfig does not know, and
    their dotted names within it (e.g. "encoder.old_option"): a checkpoint written before an
    option was removed still loads (its weights are then checked key by key). A flat config of
    an older layout is returned as is, for from_dict's own error."""
    d = dict(d)
    if _is_flat(d):
        return d, []
    names = _field_names(ModelConfig)
    dropped = sorted(set(d) - names)
    d = {k: v for k, v in d.items() if k in names}
    for part, (registry, default) in PARTS.items():
        sub = d.get(part)
        if not isinstance(sub, dict) or sub.get("kind", default) not in registry:
            continue  # a bare kind name, or a kind from_dict will name as unknown
        fields = _field_names(registry[sub.get("kind", default)])
        dropped += [f"{part}.{k}" for k in sorted(set(sub) - fields)]
        d[part] = {k: v for k, v in sub.items() if k in fields}
    return d, dropped


def _is_flat(d: dict) -> bool:
    """A model config of the old flat layout (enc_dim, dec_dim, ...)."""
    return "enc_dim" in d or "dec_dim" in d


def _field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def check_keys(cls, d: dict, where: str) -> dict:
    """d itself when every key is a field of dataclass `cls`; else a ValueError naming the
    unknown keys (as `where`.key) and the valid ones. Every typed config's from_dict uses it."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ValueError(f"unknown config key {', '.join(f'{where}.{k}' for k in unknown)}; "
                         f"valid keys of {where}: {', '.join(names)}")
    return d


def _pick(registry: dict[str, type], d, where: str, default: str):
    """The config class named by d['kind'] (a dict, or a bare kind name), filled from d."""
    d = {"kind": d} if isinstance(d, str) else dict(d)
    kind = d.get("kind", default)
    if kind not in registry:
        raise ValueError(f"{where}={kind!r} is unknown; choose one of {', '.join(registry)}")
    check_keys(registry[kind], d, where)
    return registry[kind](**d)
