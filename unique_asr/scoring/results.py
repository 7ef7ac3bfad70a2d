"""One row per scored run, appended to the recipe's RESULTS.md.

The table is found by its header line; if the file or the table is missing they are created
(the header and its separator are written once). Rows are only ever appended, so the file is a
log of every run (rows go after the table's last row): model, attention, budget, WER, RTFx, date, git hash and the exact command.
"""

from __future__ import annotations

import datetime as _dt
import subprocess
from pathlib import Path

COLUMNS = [
    "date (UTC)", "test set", "model", "attention", "budget", "decoding", "WER %", "sub", "del",
    "ins", "ref words", "RTFx", "tokens/s", "git", "command",
]
HEADER = "| " + " | ".join(COLUMNS) + " |"
SEPARATOR = "|" + "|".join("---" for _ in COLUMNS) + "|"


def git_hash(cwd: str | Path | None = None) -> str:
    """Short HEAD hash, with '+dirty' when tracked files differ; 'unknown' outside git."""
    try:
        h = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True,
            check=True, timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], check=False, cwd=cwd,
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return h + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _cell(v) -> str:
    if isinstance(v, float):
        v = f"{v:.2f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def append_row(results_md: str | Path, row: dict) -> str:
    """Append `row` (keys from COLUMNS; missing ones are '-') to the table; returns the line."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown RESULTS.md columns {sorted(unknown)}; known: {COLUMNS}")
    path = Path(results_md)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text().splitlines() if path.exists() else []
    line = "| " + " | ".join(_cell(row.get(c, "-")) for c in COLUMNS) + " |"
    if HEADER in lines:  # insert after the table's last row, wherever the table sits
        end = lines.index(HEADER) + 1
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        lines.insert(end, line)
    else:
        lines += ["# Results"] if not lines else []
        lines += ["", "## Decoding runs (one row per run, appended by unique_asr.bin.score)", ""]
        lines += [HEADER, SEPARATOR, line]
    path.write_text("\n".join(lines) + "\n")
    return line
