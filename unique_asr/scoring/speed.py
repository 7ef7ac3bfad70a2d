"""Decoding speed figures: RTF, RTFx and tokens per second.

RTF = wall-clock seconds / audio seconds (lower is faster); RTFx = 1 / RTF (audio seconds decoded
per wall second, higher is faster, the figure RESULTS.md reports). Tokens per second counts the
transcript tokens generated during the decode steps only (prefill excluded), gpt-fast style.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Speed:
    """Timings of one decoding run (one test set, one setting)."""

    audio_seconds: float = 0.0  # total duration of the decoded audio
    wall_seconds: float = 0.0  # whole decode: features, encoder, prefill and decode steps
    prefill_seconds: float = 0.0  # encoder + prefill
    step_seconds: float = 0.0  # autoregressive decode steps
    tokens: int = 0  # transcript tokens generated (excluding the end token)

    @property
    def rtf(self) -> float:
        return self.wall_seconds / self.audio_seconds if self.audio_seconds > 0 else float("nan")

    @property
    def rtfx(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.step_seconds if self.step_seconds > 0 else float("nan")

    def add(self, other: Speed) -> Speed:
        """Sum of two runs' timings (e.g. batches of one test set)."""
        return Speed(**{k: getattr(self, k) + getattr(other, k) for k in asdict(self)})

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(rtf=self.rtf, rtfx=self.rtfx, tokens_per_second=self.tokens_per_second)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Speed:
        return cls(**{k: d[k] for k in asdict(cls()) if k in d})
