"""Stage 0 of egs/librispeech_longform: a local LibriSpeech copy -> <data_dir>/corpus.

Training splits keep one recording per utterance (links to the original FLAC files). The
long-form splits (cfg.corpus.longform_splits) join the utterances of each chapter in utterance-id
order into one recording, <spk>-<chapter>.flac, with corpus.gap_s of silence between them; each
utterance becomes a supervision at its exact place (README.md: the protocol and its lengths).

    PYTHONPATH=egs/librispeech_longform/local python -m librispeech_prep \\
        recipe_dir=egs/librispeech_longform corpus=quick corpus.path=/data/LibriSpeech
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from unique_asr.bin._common import hydra_entry, log, start, to_dict
from unique_asr.data.atomic import write_json
from unique_asr.data.corpus_export import (Span, missing_corpus_file, place_audio,
                                           write_joined, write_segments)

LAYOUT = """  <path>/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utterance>.flac
  <path>/<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt  ("<utterance-id> TEXT" lines)
  parts: train-clean-100, train-clean-360, train-other-500, dev-clean, dev-other, test-clean,
  test-other (as unpacked from openslr.org/12: <path> is the LibriSpeech/ directory)"""


def check_layout(root: Path, parts: list[str]) -> None:
    """Every part a directory with transcripts, every transcript line's FLAC present."""
    if not root.is_dir():
        raise missing_corpus_file("LibriSpeech", root, LAYOUT)
    for part in parts:
        if not (root / part).is_dir():
            raise missing_corpus_file("LibriSpeech", root / part, LAYOUT)
        trans = sorted((root / part).glob("*/*/*.trans.txt"))
        if not trans:
            raise missing_corpus_file("LibriSpeech", root / part / "<spk>/<chapter>/"
                                      "<spk>-<chapter>.trans.txt", LAYOUT)
        for t in trans:
            for line in t.read_text().splitlines():
                if line.strip():
                    flac = t.parent / f"{line.split()[0]}.flac"
                    if not flac.is_file():
                        raise missing_corpus_file("LibriSpeech", flac, LAYOUT)


def chapter_rows(recordings, supervisions, audio_dir: Path, rate: int, gap_s: float) -> list[dict]:
    """Join each chapter's utterances (utterance-id order) into <spk>-<chapter>.flac; one row
    per utterance at its place in the joined recording."""
    by_chapter: dict[str, list] = {}
    for sup in supervisions:
        by_chapter.setdefault(sup.recording_id.rsplit("-", 1)[0], []).append(sup)
    rows = []
    for chapter, sups in sorted(by_chapter.items()):
        sups.sort(key=lambda s: s.recording_id)
        spans = [Span(Path(recordings[s.recording_id].sources[0].source)) for s in sups]
        times = write_joined(audio_dir / f"{chapter}.flac", spans, rate, gap_s)
        rows += [{"recording_id": chapter, "start": t0, "duration": dur, "speaker": s.speaker,
                  "text": s.text, "utterance_id": s.recording_id}
                 for s, (t0, dur) in zip(sups, times)]
    return rows


def utterance_rows(recordings, supervisions, audio_dir: Path, rate: int) -> list[dict]:
    """One recording per utterance, linked to its FLAC."""
    rows = []
    for s in supervisions:
        dur = place_audio(Path(recordings[s.recording_id].sources[0].source), audio_dir,
                          s.recording_id, rate)
        rows.append({"recording_id": s.recording_id, "start": 0.0, "duration": dur,
                     "speaker": s.speaker, "text": s.text})
    return rows


def minutes(rows: list[dict]) -> dict:
    ends: dict[str, float] = {}
    for r in rows:
        ends[r["recording_id"]] = max(ends.get(r["recording_id"], 0.0), r["start"] + r["duration"])
    m = sorted(v / 60 for v in ends.values())
    return {"recordings": len(m), "minutes_total": round(sum(m), 2), "minutes_min": round(m[0], 2),
            "minutes_mean": round(sum(m) / len(m), 2), "minutes_max": round(m[-1], 2)}


@hydra_entry
def main(cfg: DictConfig) -> None:
    from lhotse.recipes import prepare_librispeech

    start(cfg, "prepare")
    corpus = to_dict(cfg.corpus)
    root = Path(corpus["path"]).expanduser()
    splits = {s: corpus["parts"][s] for s in cfg.data.splits}
    check_layout(root, sorted({p for parts in splits.values() for p in parts}))
    out = Path(cfg.data_dir) / "corpus"
    rate = int(cfg.data.sample_rate)
    info = {}
    for split, parts in splits.items():
        manifests = prepare_librispeech(root, dataset_parts=parts, num_jobs=int(cfg.num_workers))
        audio_dir = out / split / "audio"
        rows = []
        for part in parts:
            recs, sups = manifests[part]["recordings"], manifests[part]["supervisions"]
            if split in corpus["longform_splits"]:
                rows += chapter_rows(recs, sups, audio_dir, rate, float(corpus["gap_s"]))
            else:
                rows += utterance_rows(recs, sups, audio_dir, rate)
        write_segments(out, split, rows)
        info[split] = {"parts": parts, "utterances": len(rows), **minutes(rows)}
    write_json(out / "info.json", info)
    log.info("prepare: corpus in %s\n%s", out, json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
