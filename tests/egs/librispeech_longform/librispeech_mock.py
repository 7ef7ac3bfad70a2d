"""A mock LibriSpeech in its real on-disk layout, built by the tests:
<root>/<part>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac + <spk>-<chapter>.trans.txt."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

WORDS = ("the old man walked slowly along the river bank and looked at the boats that "
         "came in from the sea with fish for the market of the little town").upper().split()

# part -> {speaker: [chapter, ...]}; each chapter has 3 utterances
PARTS = {"train-clean-100": {"19": ["198", "227"], "26": ["495"]},
         "dev-clean": {"84": ["121123"]}, "dev-other": {"116": ["288045"]},
         "test-clean": {"1089": ["134686", "134691"], "121": ["121726"]},
         "test-other": {"1688": ["142285"]}}
UTTERANCES = 3


def make_mock_librispeech(root: Path, tone) -> dict[str, dict]:
    """Write the mock corpus; return {utterance id: {"path", "text", "samples"}}."""
    utts, seed = {}, 0
    for part, speakers in PARTS.items():
        for spk, chapters in speakers.items():
            for ch in chapters:
                d = root / "LibriSpeech" / part / spk / ch
                d.mkdir(parents=True)
                lines = []
                # written out of order: the chapter must come back in utterance-id order
                for u in reversed(range(UTTERANCES)):
                    uid = f"{spk}-{ch}-{u:04d}"
                    seed += 1
                    audio = tone(0.4 + 0.13 * (seed % 5), seed)
                    sf.write(d / f"{uid}.flac", audio, 16000, subtype="PCM_16")
                    text = " ".join(WORDS[(seed * 3 + k) % len(WORDS)] for k in range(3 + seed % 4))
                    lines.append(f"{uid} {text}")
                    utts[uid] = {"path": d / f"{uid}.flac", "text": text,
                                 "samples": sf.read(d / f"{uid}.flac", dtype="int16")[0]}
                (d / f"{spk}-{ch}.trans.txt").write_text("\n".join(lines) + "\n")
    return utts

