"""Warn when the CTC head is still on its blank plateau at the end of the CTC warm-up.

Why: a CTC head that has not left the plateau (the loss flat at the blank-and-unigram level,
every frame read as blank) gives ~100% WER however long training goes on, and nothing else in
the log says so until decoding. A head still there at the end of the CTC warm-up rarely leaves
it (egs/synth_longform/RESULTS.md), so an early warning saves the rest of the budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CtcPlateauWatch:
    """Feed it each step's CTC loss; `check(step, due)` says once, at the first step that is `due`
    (the loop: the CTC warm-up is over) and at least 3 `window`s in, whether the mean of the last
    `window` losses is still above `ratio` x the mean of steps [window, 2 window) (the first
    `window` steps are the fall from random outputs to the plateau itself)."""

    window: int = 100
    ratio: float = 0.85
    reference: float | None = None
    _first: list[float] = field(default_factory=list)
    _recent: list[float] = field(default_factory=list)
    checked: bool = False
    on_plateau: bool = False

    def add(self, step: int, ctc_loss: float) -> None:
        if self.window <= step < 2 * self.window:
            self._first.append(ctc_loss)
        self._recent.append(ctc_loss)
        del self._recent[:-self.window]

    def check(self, step: int, due: bool = True) -> str | None:
        """The warning, the first time a due step finds the loss on its plateau; else None.
        After a resume past the reference steps there is nothing to compare: no check."""
        if self.checked or not due or step < 3 * self.window:
            return None
        self.checked = True
        if len(self._first) < self.window // 2:  # resumed past the reference steps
            return None
        self.reference = sum(self._first) / len(self._first)
        now = sum(self._recent) / len(self._recent)
        self.on_plateau = now > self.ratio * self.reference
        if not self.on_plateau:
            return None
        return (f"step {step}: the CTC loss is still on its plateau ({now:.3f} over the last "
                f"{len(self._recent)} steps against {self.reference:.3f} at steps "
                f"{self.window}-{2 * self.window}): the encoder has not learned to align, and "
                "decoding will read (almost) nothing. A head still on the plateau at the end of "
                "the CTC warm-up rarely leaves it (egs/synth_longform/RESULTS.md): consider "
                "stopping this one and starting again with another seed or settings")
