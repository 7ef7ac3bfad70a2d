"""The files bin.transcribe writes as it goes, one line per recording, flushed to disk after each
group, so a run that stops on a bad file keeps every transcript it finished.

transcripts.txt    `<id>\\t<transcript>` (the hypothesis as decoded; scoring normalises)
transcripts.jsonl  id, duration (s), seconds (its decode time: features, encoder, search),
                   rtfx (duration / seconds), tokens, pieces
skipped.jsonl      input (file, or file:line), error: what was skipped and why (data.skip_bad)
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def per_recording(row: dict) -> dict:
    """The transcripts.jsonl line of one decoded row (decoding.runner's format)."""
    secs = float(row.get("seconds", 0.0))
    return {"id": row["id"], "duration": round(float(row["duration"]), 4),
            "seconds": round(secs, 4),
            "rtfx": round(float(row["duration"]) / secs, 2) if secs > 0 else None,
            "tokens": int(row.get("tokens", 0)), "pieces": int(row.get("pieces", 1))}


class TranscriptWriter:
    """Opens the three files (a run starts them anew) and appends to them."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.paths = {"text": self.out_dir / "transcripts.txt",
                      "jsonl": self.out_dir / "transcripts.jsonl",
                      "skipped": self.out_dir / "skipped.jsonl"}
        for p in self.paths.values():
            p.write_text("")

    def _append(self, key: str, lines: list[str]) -> None:
        if not lines:
            return
        with open(self.paths[key], "a", encoding="utf-8") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())

    def add(self, rows: list[dict], skipped: list[dict] = ()) -> None:
        """Append decoded rows (id, hyp, duration, seconds, ...) and skipped inputs."""
        self._append("text", [f"{r['id']}\t{' '.join(r['hyp'].split())}\n" for r in rows])
        self._append("jsonl", [json.dumps(per_recording(r)) + "\n" for r in rows])
        self._append("skipped", [json.dumps(s, ensure_ascii=False) + "\n" for s in skipped])
