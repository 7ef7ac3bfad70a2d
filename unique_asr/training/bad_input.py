"""Bad-input policy for training data: what is checked, counted, skipped, or raised.

Everything is checked while the data is loaded up front, so a bad file never crashes an epoch
half-way. Counts are logged and written next to the checkpoints.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class BadInputError(RuntimeError):
    """Unusable input that the configuration says not to skip (data.skip_bad=false)."""


@dataclass
class BadInputStats:
    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def add(self, kind: str, what: str) -> None:
        self.counts[kind] += 1
        self.examples.setdefault(kind, what)

    def summary(self) -> str:
        if not self.counts:
            return "no bad input"
        return "; ".join(f"{k}: {n} (e.g. {self.examples[k]})" for k, n in sorted(
            self.counts.items()))
