"""The training configuration: every `train.*` key, its type and its default, written once here.

conf/train/default.yaml overrides only what differs from these defaults (and interpolations such
as `tag: ${model.name}`); bin/train.py resolves the hydra group to a plain dict and calls
TrainConfig.from_dict, which refuses unknown keys. Nothing below bin/ reads config dicts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from unique_asr.models.attention import TrainAttentionConfig
from unique_asr.models.config import check_keys


@dataclass
class CurriculumConfig:
    """`train.curriculum.*`: the window-length schedule (training/curriculum.py)."""

    min_s: float = 1.0            # shortest window target (one sentence is always the minimum)
    start_max_s: float = 5.0      # longest window in the first epoch (about one sentence) ...
    end_max_s: float = 600.0      # ... growing log-linearly to whole recordings
    ramp_epochs: int = 8          # epochs of the ramp
    whole_prob: float = 0.3       # chance to use the whole recording once it fits the cap
    # the ramp restarts at the first epoch after train.ctc_warmup_steps, so the decoder also
    # starts on short windows (one that first meets long windows learns a text LM, not the audio)
    restart_after_ctc_warmup: bool = True
    valid_max_s: float = 30.0     # length of the dev windows of the validation loss


@dataclass
class TrainConfig:
    """`train.*` (run.sh stage 4)."""

    tag: str | None = None        # exp dir: ${exp_dir}/${train.tag} (the yaml: ${model.name})
    train_split: str = "train"
    valid_split: str | None = "dev"  # None: no validation
    device: str = "auto"          # auto (cuda if present) | cpu | cuda
    num_threads: int = 2          # torch CPU threads per process
    bf16: bool = True             # bf16 autocast on GPU (ignored on CPU)
    lr: float = 1.5e-3
    weight_decay: float = 0.01
    pretrained_lr_scale: float = 0.1  # lr factor of trainable pretrained weights (Whisper blocks)
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    max_steps: int = 4000
    max_epochs: int = 1000
    # wall-clock budget in minutes: the cosine follows time or steps, whichever is further;
    # 0 = steps only (exactly reproducible)
    max_minutes: float = 28.0
    grad_clip: float = 5.0
    accum_grad: int = 1
    max_duration: float = 60.0    # seconds of audio per batch per rank (longer windows go alone)
    num_buckets: int = 6
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    save_every: int = 200
    keep_last: int = 3
    average_last: int = 3         # avg-<N>.pt of the last N checkpoints at the end (0: none)
    valid_every: int = 200        # 0: validate at the end only
    valid_max_windows: int = 48
    valid_wer_recordings: int = 1  # greedy WER on this many whole dev recordings at the end
    log_every: int = 10
    max_bad_steps: int = 5        # stop after this many consecutive NaN/inf steps
    resume: bool = False          # continue exactly from ${exp_dir}/last.pt when it exists
    init_from: str | None = None  # fine-tuning: a checkpoint whose MODEL weights start this run
    # the first N schedule steps train CTC only (decoder CE weight 0): without them the decoder
    # memorises the text while CTC stays on its plateau. 0 when fine-tuning (init_from)
    ctc_warmup_steps: int = 800
    hard_steps: int = 0           # attention.kind=unique_soft: the last N steps use unique_hard
    halt_after_steps: int = 0     # stop after this many steps as if killed (tests)
    # stop (with a checkpoint) after this many minutes of this process; resume=true continues
    halt_after_minutes: float = 0.0
    attention: TrainAttentionConfig = field(default_factory=TrainAttentionConfig)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from the resolved `train` group; ValueError names any unknown key."""
        d = dict(d)
        nested = {"curriculum": CurriculumConfig, "attention": TrainAttentionConfig}
        kw = {k: _build(c, d.pop(k) or {}, f"train.{k}") for k, c in nested.items() if k in d}
        kw.update(check_keys(cls, d, "train"))
        if "betas" in kw:
            kw["betas"] = tuple(float(b) for b in kw["betas"])
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        for name in ("max_steps", "accum_grad", "save_every", "log_every", "max_bad_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"train.{name}={getattr(self, name)}: must be >= 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"train.device={self.device!r}: use auto, cpu or cuda")
        self.attention.validate()

    def in_ctc_warmup(self, pos: float) -> bool:
        """True for the first `ctc_warmup_steps` schedule positions (steps, or the wall-clock
        fraction times max_steps under max_minutes): the decoder's cross-entropy is off, so the
        encoder learns acoustics from CTC alone before the decoder can memorise the text."""
        return pos < float(self.ctc_warmup_steps or 0)

    def in_hard_phase(self, pos: float) -> bool:
        """True once the schedule position reaches the last `hard_steps` steps (with a time
        budget: the last hard_steps / max_steps of the time)."""
        return self.hard_steps > 0 and pos >= float(self.max_steps) - self.hard_steps


def _build(cls, d: dict, prefix: str):
    return cls(**check_keys(cls, dict(d), prefix))
