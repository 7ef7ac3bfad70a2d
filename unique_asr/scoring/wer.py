"""Word error rate per recording and per test set, with word-level alignments.

Both sides go through the project's one text normaliser (unique_asr.data.text_norm) before
alignment, so every WER in the project is comparable. jiwer does the Levenshtein alignment; this
module turns its chunks into word-level operations that the errs file and the error tables use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import jiwer

# One alignment step: (op, ref word, hyp word); op is C(orrect), S(ub), D(el), I(ns); the missing
# side of a deletion/insertion is "*".
Op = tuple[str, str, str]


def default_normalizer() -> Callable[[str], str]:
    """The project's text normaliser; imported lazily so scoring has no import-time data deps."""
    from unique_asr.data.text_norm import normalize_text

    return normalize_text


@dataclass
class Counts:
    """Error counts of a recording or a part of one (e.g. one speaker's words)."""

    sub: int
    dels: int
    ins: int
    nref: int

    @property
    def errors(self) -> int:
        return self.sub + self.dels + self.ins

    @property
    def wer(self) -> float:
        """Errors / reference words; an empty reference gives 0 (no errors) or inf."""
        if self.nref == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.nref


@dataclass
class RecordingScore(Counts):
    """Alignment and error counts of one recording (after normalisation)."""

    rec_id: str
    ref: str
    hyp: str
    ops: list[Op]
    speakers: dict[str, Counts] | None = None  # its errors by speaker (speaker_counts)

    @property
    def correct(self) -> int:
        return self.nref - self.sub - self.dels


@dataclass
class SetScore:
    """Scores of a test set: per recording, totals and the error tables."""

    recordings: list[RecordingScore] = field(default_factory=list)

    @property
    def sub(self) -> int:
        return sum(r.sub for r in self.recordings)

    @property
    def dels(self) -> int:
        return sum(r.dels for r in self.recordings)

    @property
    def ins(self) -> int:
        return sum(r.ins for r in self.recordings)

    @property
    def nref(self) -> int:
        return sum(r.nref for r in self.recordings)

    @property
    def errors(self) -> int:
        return self.sub + self.dels + self.ins

    @property
    def wer(self) -> float:
        """Total errors over total reference words (not a mean of per-recording WERs)."""
        if self.nref == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.nref

    def speaker_counts(self) -> dict[str, Counts]:
        """Errors by speaker over all recordings; empty unless every recording has them."""
        if not self.recordings or any(r.speakers is None for r in self.recordings):
            return {}
        out: dict[str, Counts] = {}
        for r in self.recordings:
            for spk, c in r.speakers.items():
                t = out.setdefault(spk, Counts(0, 0, 0, 0))
                t.sub, t.dels, t.ins, t.nref = (t.sub + c.sub, t.dels + c.dels, t.ins + c.ins,
                                                t.nref + c.nref)
        return dict(sorted(out.items()))

    def error_counts(self) -> tuple[Counter, Counter, Counter]:
        """Counters of substitutions (ref, hyp), deletions (ref) and insertions (hyp)."""
        subs, dels, ins = Counter(), Counter(), Counter()
        for r in self.recordings:
            for op, a, b in r.ops:
                if op == "S":
                    subs[(a, b)] += 1
                elif op == "D":
                    dels[a] += 1
                elif op == "I":
                    ins[b] += 1
        return subs, dels, ins


def _ops_from_chunks(ref: list[str], hyp: list[str], chunks) -> list[Op]:
    ops: list[Op] = []
    for c in chunks:
        r = ref[c.ref_start_idx : c.ref_end_idx]
        h = hyp[c.hyp_start_idx : c.hyp_end_idx]
        if c.type == "equal":
            ops += [("C", a, b) for a, b in zip(r, h)]
        elif c.type == "substitute":
            ops += [("S", a, b) for a, b in zip(r, h)]
        elif c.type == "delete":
            ops += [("D", a, "*") for a in r]
        elif c.type == "insert":
            ops += [("I", "*", b) for b in h]
        else:  # pragma: no cover - jiwer only emits the four types above
            raise ValueError(f"unknown jiwer alignment type {c.type!r}")
    return ops


def score_recording(
    rec_id: str, ref: str, hyp: str, normalize: Callable[[str], str] | None = None
) -> RecordingScore:
    """Normalise ref and hyp, align them, count substitutions, deletions and insertions."""
    norm = normalize or default_normalizer()
    ref_n, hyp_n = norm(ref or ""), norm(hyp or "")
    ref_w, hyp_w = ref_n.split(), hyp_n.split()
    out = jiwer.process_words(" ".join(ref_w), " ".join(hyp_w))
    ops = _ops_from_chunks(ref_w, hyp_w, out.alignments[0])
    return RecordingScore(
        rec_id=rec_id,
        ref=" ".join(ref_w),
        hyp=" ".join(hyp_w),
        ops=ops,
        sub=out.substitutions,
        dels=out.deletions,
        ins=out.insertions,
        nref=len(ref_w),
    )


def speaker_counts(
    score: RecordingScore, turns: list[tuple[str, str]],
    normalize: Callable[[str], str] | None = None,
) -> dict[str, Counts] | None:
    """Split one whole recording's alignment by speaker: each reference word belongs to the
    speaker of its turn, an inserted word to the speaker of the reference word before it (the
    first word's speaker at the start). None when the turns, each normalised, do not give the
    recording's normalised reference word for word (nothing can be attributed then)."""
    norm = normalize or default_normalizer()
    words = [(spk, w) for spk, text in turns for w in norm(text).split()]
    if [w for _, w in words] != score.ref.split() or not words:
        return None
    out: dict[str, Counts] = {}
    i = 0  # the next reference word
    for op, _, _ in score.ops:
        c = out.setdefault(words[max(i - 1, 0) if op == "I" else i][0], Counts(0, 0, 0, 0))
        if op == "I":
            c.ins += 1
            continue
        c.nref += 1
        c.sub += op == "S"
        c.dels += op == "D"
        i += 1
    return out


def score_set(
    items: Iterable[tuple[str, str, str]], normalize: Callable[[str], str] | None = None,
    turns: dict[str, list[tuple[str, str]]] | None = None,
) -> SetScore:
    """Score (rec_id, ref, hyp) triples; recordings are kept sorted by id. turns: each
    recording's (speaker, text) turns, to split its errors by speaker (speaker_counts)."""
    norm = normalize or default_normalizer()
    recs = [score_recording(i, r, h, norm) for i, r, h in items]
    for r in recs:
        if turns and r.rec_id in turns:
            r.speakers = speaker_counts(r, turns[r.rec_id], norm)
    dup = sorted(i for i, n in Counter(r.rec_id for r in recs).items() if n > 1)
    if dup:
        raise ValueError(f"duplicate recording ids in hypotheses: {dup[:5]}")
    return SetScore(sorted(recs, key=lambda r: r.rec_id))
