"""The window-length curriculum: which windows each epoch trains on.

The cap on window length grows log-linearly from `start_max_s` to `end_max_s` over
`ramp_epochs` epochs (windows.curriculum_cap). With `restart_after_ctc_warmup`, the ramp starts
again at the first epoch in which the decoder's cross-entropy is on, so the decoder, too, first
meets short windows; an epoch in which the CTC warm-up ends stops there, and the next epoch opens
the restarted ramp.
"""

from __future__ import annotations

from unique_asr.training.config import CurriculumConfig
from unique_asr.training.windows import Window, curriculum_cap, epoch_windows


class Curriculum:
    """ce_epoch0: the first epoch with the decoder's cross-entropy on (-1: still in the CTC
    warm-up); checkpointed, so a resumed run continues the same ramp."""

    def __init__(self, cfg: CurriculumConfig, seed: int, ce_epoch0: int = -1):
        self.cfg = cfg
        self.seed = seed
        self.ce_epoch0 = ce_epoch0

    def start_epoch(self, epoch: int, ctc_warmup: bool) -> None:
        """Called before each epoch: the first epoch past the CTC warm-up is remembered."""
        if self.ce_epoch0 < 0 and not ctc_warmup:
            self.ce_epoch0 = epoch

    def ramp_epoch(self, epoch: int) -> int:
        if self.cfg.restart_after_ctc_warmup and self.ce_epoch0 >= 0:
            return epoch - self.ce_epoch0
        return epoch

    def cap(self, epoch: int) -> float:
        """Longest window (seconds) of an epoch."""
        c = self.cfg
        return curriculum_cap(self.ramp_epoch(epoch), c.start_max_s, c.end_max_s, c.ramp_epochs)

    def windows(self, recordings: dict, epoch: int) -> list[Window]:
        """The epoch's windows of all recordings (deterministic in seed and epoch)."""
        return epoch_windows(recordings, epoch, self.seed, self.cap(epoch), self.cfg.min_s,
                             self.cfg.whole_prob)

    def must_restart(self, ctc_warmup: bool) -> bool:
        """True at the first step past the CTC warm-up inside an epoch that began in it: the
        epoch ends there so that the next one restarts the ramp."""
        return self.cfg.restart_after_ctc_warmup and not ctc_warmup and self.ce_epoch0 < 0

    def valid_windows(self, recordings: dict) -> list[Window]:
        """Fixed dev windows (up to valid_max_s, never whole recordings) for the valid loss."""
        return epoch_windows(recordings, 0, self.seed, self.cfg.valid_max_s, self.cfg.min_s, 0.0)
