"""Score one decoding run: hyps file -> recogs/errs/wer-summary files + a RESULTS.md row."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from unique_asr.scoring.files import write_all
from unique_asr.scoring.hyps import hyps_path, meta_path, read_hyps, read_meta
from unique_asr.scoring.results import append_row, git_hash, utc_now
from unique_asr.scoring.speed import Speed
from unique_asr.scoring.wer import SetScore, score_set

log = logging.getLogger(__name__)


def score_run(
    decode_dir: str | Path,
    test_set: str,
    tag: str,
    results_md: str | Path | None = None,
    command: str | None = None,
    normalize: Callable[[str], str] | None = None,
) -> tuple[SetScore, dict]:
    """Score hyps-<set>-<tag>.jsonl in `decode_dir`; returns the score and the written paths.

    The RESULTS.md row takes model, attention, budget, decoding method, speed and the decode
    command from meta-<set>-<tag>.json (written by decoding); `command` overrides the latter.
    """
    rows = read_hyps(hyps_path(decode_dir, test_set, tag))
    meta = read_meta(meta_path(decode_dir, test_set, tag))
    turns = {r["id"]: r["ref_turns"] for r in rows if r.get("ref_turns")}
    score = score_set(((r["id"], r["ref"], r["hyp"]) for r in rows), normalize, turns)
    speed = Speed.from_dict(meta["speed"]) if "speed" in meta else None
    skipped = meta.get("skipped") or []
    note = f"(skipped {len(skipped)} unreadable recordings: not scored)" if skipped else ""
    if skipped:
        log.warning("%s %s: %d recordings were skipped in decoding and are not scored: %s",
                    test_set, tag, len(skipped), [s["id"] for s in skipped][:10])
    paths = write_all(Path(decode_dir), test_set, tag, score, speed, note)
    log.info(
        "%s %s: WER %.2f%% [%d / %d, %d ins, %d del, %d sub] over %d recordings",
        test_set, tag, 100 * score.wer, score.errors, score.nref, score.ins, score.dels,
        score.sub, len(score.recordings),
    )
    for spk, c in score.speaker_counts().items():
        log.info("  speaker %s: WER %.2f%% (%d words)", spk, 100 * c.wer, c.nref)
    if results_md is not None:
        row = {
            "date (UTC)": utc_now(),
            "test set": test_set,
            "model": meta.get("model", "-"),
            "attention": meta.get("attention", "-"),
            "budget": meta.get("budget", "-") if meta.get("attention") != "dense" else "-",
            "decoding": meta.get("method", "-") + (f", {len(skipped)} skipped" if skipped else ""),
            "WER %": f"{100 * score.wer:.2f}",
            "sub": score.sub,
            "del": score.dels,
            "ins": score.ins,
            "ref words": score.nref,
            "RTFx": f"{speed.rtfx:.2f}" if speed else "-",
            # no decode steps (decode.method=ctc_greedy): no tokens/s to report
            "tokens/s": f"{speed.tokens_per_second:.1f}" if speed and speed.step_seconds > 0
            else "-",
            "git": meta.get("git") or git_hash(),
            "command": f"`{command or meta.get('command', '-')}`",
        }
        append_row(results_md, row)
        paths["results"] = Path(results_md)
    return score, paths
