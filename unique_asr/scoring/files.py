"""The scoring files of one test set and setting (Kaldi/icefall-like, plain text).

recogs-<set>-<tag>.txt       normalised ref= / hyp= lines per recording
errs-<set>-<tag>.txt         totals, per-recording counts, word alignments, most frequent errors
wer-summary-<set>-<tag>.txt  one line: setting, WER and counts, speed
"""

from __future__ import annotations

from pathlib import Path

from unique_asr.scoring.speed import Speed
from unique_asr.scoring.wer import Counts, Op, SetScore


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _counts(s: Counts | SetScore) -> str:
    return f"[ {s.errors} / {s.nref}, {s.ins} ins, {s.dels} del, {s.sub} sub ]"


def write_recogs(path: Path, score: SetScore) -> None:
    """Normalised reference and hypothesis of every recording, sorted by recording id."""
    with open(path, "w") as f:
        f.writelines(f"{r.rec_id}:\tref={r.ref}\n{r.rec_id}:\thyp={r.hyp}\n" for r in score.recordings)


def alignment_lines(ops: list[Op], width: int = 100) -> list[str]:
    """REF/HYP/OPS lines, words padded to a common column, wrapped at `width` characters."""
    lines: list[str] = []
    ref, hyp, mark = [], [], []
    used = 0
    for op, a, b in ops:
        w = max(len(a), len(b))
        if used and used + w + 1 > width:
            lines += ["REF: " + " ".join(ref), "HYP: " + " ".join(hyp), "OPS: " + " ".join(mark), ""]
            ref, hyp, mark, used = [], [], [], 0
        ref.append(a.ljust(w))
        hyp.append(b.ljust(w))
        mark.append(("" if op == "C" else op).ljust(w))
        used += w + 1
    if ref:
        lines += ["REF: " + " ".join(ref), "HYP: " + " ".join(hyp), "OPS: " + " ".join(mark), ""]
    return [ln.rstrip() for ln in lines]


def write_errs(path: Path, score: SetScore, title: str = "", top_n: int = 20) -> None:
    """Totals, per-recording counts, alignment per recording and the most frequent errors."""
    subs, dels, ins = score.error_counts()
    out = [
        f"%WER {_pct(score.wer)} {_counts(score)}" + (f"  {title}" if title else ""),
        (
            f"recordings: {len(score.recordings)}  reference words: {score.nref}  "
            f"correct: {score.nref - score.sub - score.dels}"
        ),
        "",
        "PER-RECORDING: id  %WER  [ errors / ref words, ins, del, sub ]",
    ]
    for r in score.recordings:
        out.append(f"{r.rec_id}  {_pct(r.wer)}  {_counts(r)}")
    speakers = score.speaker_counts()
    if speakers:
        out += ["", ("PER-SPEAKER (inserted words count for the speaker of the reference word "
                     "before them): speaker  %WER  [ errors / ref words, ins, del, sub ]")]
        out += [f"{spk}  {_pct(c.wer)}  {_counts(c)}" for spk, c in speakers.items()]
    out += ["", "ALIGNMENTS (S substitution, D deletion, I insertion; * = no word):", ""]
    for r in score.recordings:
        out.append(f"== {r.rec_id}  %WER {_pct(r.wer)} {_counts(r)}")
        out += alignment_lines(r.ops)
    out += ["", f"MOST FREQUENT SUBSTITUTIONS (top {top_n}): count  ref -> hyp"]
    out += [f"{n:6d}  {a} -> {b}" for (a, b), n in subs.most_common(top_n)]
    out += ["", f"MOST FREQUENT DELETIONS (top {top_n}): count  ref"]
    out += [f"{n:6d}  {a}" for a, n in dels.most_common(top_n)]
    out += ["", f"MOST FREQUENT INSERTIONS (top {top_n}): count  hyp"]
    out += [f"{n:6d}  {b}" for b, n in ins.most_common(top_n)]
    Path(path).write_text("\n".join(out) + "\n")


def write_summary(path: Path, tag: str, score: SetScore, speed: Speed | None = None) -> None:
    """One header line and one row: the figures a results table needs."""
    head = "settings\tWER\tsub\tdel\tins\tref_words\trecordings\tRTF\tRTFx\ttokens_per_s"
    sp = speed or Speed()
    row = (
        f"{tag}\t{_pct(score.wer)}\t{score.sub}\t{score.dels}\t{score.ins}\t{score.nref}\t"
        f"{len(score.recordings)}\t{sp.rtf:.4f}\t{sp.rtfx:.2f}\t{sp.tokens_per_second:.1f}"
    )
    Path(path).write_text(head + "\n" + row + "\n")


def write_all(out_dir: Path, test_set: str, tag: str, score: SetScore, speed: Speed | None,
              note: str = ""):
    """Write the three files of one test set and setting; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f"{k}-{test_set}-{tag}.txt" for k in ("recogs", "errs", "wer-summary")}
    write_recogs(paths["recogs"], score)
    write_errs(paths["errs"], score, title=f"set={test_set} setting={tag} {note}".strip())
    write_summary(paths["wer-summary"], tag, score, speed)
    return paths
