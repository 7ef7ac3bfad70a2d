"""Stage 0 of egs/tedlium3: a local TED-LIUM 3 copy -> <data_dir>/corpus.

lhotse's prepare_tedlium parses the `legacy` distribution's STM files with its Kaldi-style text
normalisation ("they 're" -> "they're", <unk> and {NOISE} dropped) and leaves out the
ignore_time_segment_in_scoring segments. Talks stay whole: training talks keep all their
segments as supervisions (the windows of training are cut between them); the whole-talk splits
(corpus.whole_talk_splits: dev, test) are cropped, when corpus.crop is on, from the start of the
first labelled segment to the end of the last, the protocol of Whisper's long-form TED-LIUM test
(README.md). SPHERE audio is written as 16 kHz FLAC (read with soundfile: no sph2pipe).

    PYTHONPATH=egs/tedlium3/local python -m tedlium_prep recipe_dir=egs/tedlium3 \\
        corpus=default corpus.path=/data/TEDLIUM_release-3
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from unique_asr.bin._common import hydra_entry, log, start, to_dict
from unique_asr.data.atomic import write_json
from unique_asr.data.corpus_export import (Span, missing_corpus_file, place_audio,
                                           write_joined, write_segments)
from unique_asr.data.text_norm import normalize_text

LAYOUT = """  <path>/legacy/<part>/sph/<talk>.sph   NIST SPHERE, 16 kHz, 16-bit PCM
  <path>/legacy/<part>/stm/<talk>.stm   "<talk> 1 <speaker> <start> <end> <label> words" lines
  parts: train, dev, test (<path> is TEDLIUM_release-3/ as unpacked from openslr.org/51)"""


def check_layout(root: Path, parts: list[str]) -> None:
    """Each part has STM files, and each STM file its talk's SPHERE audio."""
    if not root.is_dir():
        raise missing_corpus_file("TED-LIUM 3", root, LAYOUT)
    for part in parts:
        stm_dir = root / "legacy" / part / "stm"
        stms = sorted(stm_dir.glob("*.stm"))
        if not stms:
            raise missing_corpus_file("TED-LIUM 3", stm_dir / "<talk>.stm", LAYOUT)
        for stm in stms:
            sph = root / "legacy" / part / "sph" / f"{stm.stem}.sph"
            if not sph.is_file():
                raise missing_corpus_file("TED-LIUM 3", sph, LAYOUT)


def talk_rows(recordings, supervisions, audio_dir: Path, rate: int, crop: bool) -> list[dict]:
    """Whole talks as recordings, segments as supervisions; cropped to the labelled span."""
    by_talk: dict[str, list] = {}
    for s in supervisions:
        if normalize_text(s.text):  # a segment of markers alone has nothing to recognise
            by_talk.setdefault(s.recording_id, []).append(s)
    rows = []
    for talk, sups in sorted(by_talk.items()):
        src = Path(recordings[talk].sources[0].source)
        offset = 0.0
        if crop:
            first = min(s.start for s in sups)
            # one sample more than the span, so rounding never cuts the last segment's end
            span = Span(src, first, max(s.end for s in sups) - first + 1 / rate)
            write_joined(audio_dir / f"{talk}.flac", [span], rate)
            offset = round(first * rate) / rate  # the first sample read_span takes
        else:
            place_audio(src, audio_dir, talk, rate)
        rows += [{"recording_id": talk, "start": round(s.start - offset, 6),
                  "duration": s.duration, "speaker": s.speaker, "text": s.text} for s in sups]
    return rows


@hydra_entry
def main(cfg: DictConfig) -> None:
    from lhotse.audio.backend import LibsndfileBackend, set_current_audio_backend
    from lhotse.recipes import prepare_tedlium

    start(cfg, "prepare")
    corpus = to_dict(cfg.corpus)
    root = Path(corpus["path"]).expanduser()
    parts = {s: corpus["parts"][s] for s in cfg.data.splits}
    check_layout(root, sorted(set(parts.values())))
    set_current_audio_backend(LibsndfileBackend())  # soundfile reads SPHERE; no sph2pipe
    manifests = prepare_tedlium(root, dataset_parts=sorted(set(parts.values())),
                                num_jobs=int(cfg.num_workers), normalize_text="kaldi")
    out = Path(cfg.data_dir) / "corpus"
    info = {}
    for split, part in parts.items():
        m = manifests[part]
        crop = bool(corpus["crop"]) and split in corpus["whole_talk_splits"]
        rows = talk_rows(m["recordings"], m["supervisions"], out / split / "audio",
                         int(cfg.data.sample_rate), crop)
        write_segments(out, split, rows)
        info[split] = {"part": part, "talks": len({r["recording_id"] for r in rows}),
                       "segments": len(rows), "cropped": crop}
    write_json(out / "info.json", info)
    log.info("prepare: corpus in %s\n%s", out, json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
