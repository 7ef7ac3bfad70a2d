"""Stage 0 of egs/earnings21: a local Earnings-21 copy -> <data_dir>/corpus/test (test only).

lhotse's prepare_earnings21 reads the 44 calls (MP3, at their own rates) and the token column of
their .nlp references; each call becomes one recording, written as 16 kHz FLAC, with one
supervision spanning the whole call (the references carry no times). Numbers and money in the
references are spelled out by the shared normaliser at stage 1 (README.md).

    PYTHONPATH=egs/earnings21/local python -m earnings21_prep recipe_dir=egs/earnings21 \\
        corpus=default corpus.path=/data/speech-datasets/earnings21
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from unique_asr.bin._common import hydra_entry, log, start, to_dict
from unique_asr.data.atomic import write_json
from unique_asr.data.corpus_export import missing_corpus_file, place_audio, write_segments

CALLS = 44  # prepare_earnings21 expects all of them
LAYOUT = f"""  <path>/media/<file_id>.mp3                        the {CALLS} calls
  <path>/transcripts/nlp_references/<file_id>.nlp    token|speaker|ts|endTs|punctuation|case|tags|wer_tags
  (<path> is the earnings21/ directory of the revdotcom/speech-datasets repository)"""


def check_layout(root: Path) -> None:
    """All 44 calls, each with its reference and each reference with its audio."""
    media, refs = root / "media", root / "transcripts" / "nlp_references"
    for d, pattern in ((root, ""), (media, "<file_id>.mp3"), (refs, "<file_id>.nlp")):
        if not d.is_dir():
            raise missing_corpus_file("Earnings-21", d, LAYOUT)
    mp3 = {p.stem for p in media.glob("*.mp3")}
    nlp = {p.stem for p in refs.glob("*.nlp")}
    for stem in sorted(nlp - mp3):
        raise missing_corpus_file("Earnings-21", media / f"{stem}.mp3", LAYOUT)
    for stem in sorted(mp3 - nlp):
        raise missing_corpus_file("Earnings-21", refs / f"{stem}.nlp", LAYOUT)
    if len(mp3) != CALLS:
        raise FileNotFoundError(f"Earnings-21: {media} has {len(mp3)} calls with references, "
                                f"not {CALLS}: the copy is incomplete. Expected on-disk layout "
                                f"under corpus.path:\n{LAYOUT}")


@hydra_entry
def main(cfg: DictConfig) -> None:
    from lhotse.recipes import prepare_earnings21

    start(cfg, "prepare")
    corpus = to_dict(cfg.corpus)
    root = Path(corpus["path"]).expanduser()
    check_layout(root)
    if list(cfg.data.splits) != ["test"]:
        raise SystemExit(f"earnings21 is test-only: data.splits must be [test], not "
                         f"{list(cfg.data.splits)}")
    recordings, supervisions = prepare_earnings21(root)
    out = Path(cfg.data_dir) / "corpus"
    rate = int(cfg.data.sample_rate)
    rows = []
    for s in supervisions:
        dur = place_audio(Path(recordings[s.recording_id].sources[0].source),
                          out / "test" / "audio", s.recording_id, rate)
        rows.append({"recording_id": s.recording_id, "start": 0.0, "duration": dur,
                     "speaker": s.recording_id, "text": s.text})
    write_segments(out, "test", rows)
    info = {"test": {"calls": len(rows), "hours": round(sum(r["duration"] for r in rows) / 3600, 3)}}
    write_json(out / "info.json", info)
    log.info("prepare: corpus in %s\n%s", out, json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
