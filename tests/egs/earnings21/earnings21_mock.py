"""A mock Earnings-21 in the layout lhotse's prepare_earnings21 reads: <root>/media/<id>.mp3
(44 calls, at 44.1 or 24 kHz like the real ones) + transcripts/nlp_references/<id>.nlp."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

CALLS = [str(4320211 + 17 * i) for i in range(44)]
HEADER = "token|speaker|ts|endTs|punctuation|case|tags|wer_tags"
# the first call's tokens and the reference stage 1 must make of them
TOKENS = ["Good", "morning", "revenue", "was", "$5.2", "billion", "in", "the", "third",
          "quarter", "2020", "up", "3.5%", "and", "$0.25", "per", "share"]
NORMALISED = ("good morning revenue was five point two billion dollars in the third quarter "
              "twenty twenty up three point five percent and twenty five cents per share")


def make_mock_earnings21(root: Path, tone) -> None:
    (root / "media").mkdir(parents=True)
    refs = root / "transcripts" / "nlp_references"
    refs.mkdir(parents=True)
    for i, call in enumerate(CALLS):
        rate = 44100 if i % 2 else 24000
        sf.write(root / "media" / f"{call}.mp3", tone(0.5, 300 + i, rate), rate, format="MP3")
        tokens = TOKENS if i == 0 else ["thank", "you", "operator"][: 1 + i % 3]
        rows = [f"{t}|{i % 2}||||LC|[]|[]" for t in tokens]
        (refs / f"{call}.nlp").write_text("\n".join([HEADER, *rows]) + "\n")
