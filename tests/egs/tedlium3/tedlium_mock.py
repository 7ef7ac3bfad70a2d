"""A mock TED-LIUM 3 in its real on-disk layout (the `legacy` distribution lhotse reads):
<root>/legacy/<part>/sph/<talk>.sph (NIST SPHERE) + stm/<talk>.stm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

LEAD_S = 2.0  # unlabelled audio before the first segment (applause, music)
# (text, seconds) per segment; one to be ignored, one of markers alone, markers in text
SEGMENTS = [("so they 're going to <unk> show you", 1.0),
            ("ignore_time_segment_in_scoring", 0.8),
            ("{NOISE}", 0.5),
            ("and it 's a {NOISE} great idea", 1.2),
            ("thank you very much", 0.9)]
TALKS = {"train": ["AlGore_2009", "BillGates_2010"], "dev": ["DanBarber_2010"],
         "test": ["AimeeMullins_2009P", "JaneMcGonigal_2010"]}


def make_mock_tedlium(root: Path, tone) -> dict[str, dict]:
    """Write the mock corpus; return {talk: {"sph", "segments": [(start, end, text)]}}."""
    talks, seed = {}, 100
    for part, names in TALKS.items():
        for d in ("sph", "stm"):
            (root / "legacy" / part / d).mkdir(parents=True)
        for name in names:
            seed += 1
            t, lines, segs = LEAD_S, [], []
            for text, dur in SEGMENTS:
                lines.append(f"{name} 1 {name} {t:.2f} {t + dur:.2f} <o,f0,male> {text}")
                segs.append((round(t, 2), round(t + dur, 2), text))
                t += dur + 0.3
            audio = np.concatenate([tone(t + 1.5, seed)])  # and a tail after the last segment
            sph = root / "legacy" / part / "sph" / f"{name}.sph"
            sf.write(sph, audio, 16000, format="NIST", subtype="PCM_16")
            (root / "legacy" / part / "stm" / f"{name}.stm").write_text("\n".join(lines) + "\n")
            talks[name] = {"sph": sph, "segments": segs,
                           "samples": sf.read(sph, dtype="int16")[0]}
    return talks

