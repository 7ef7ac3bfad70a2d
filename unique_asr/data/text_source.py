"""Offline English text for the synthetic corpus: Debian's fortune cookie files.

The files (/usr/share/games/fortunes/{fortunes,literature,riddles}) ship with Debian's
fortunes-min package under the BSD licence in /usr/share/doc/fortunes-min/copyright; the
`large` corpus also reads the ~40 files of Debian's full `fortunes` package (same directory,
same licence, /usr/share/doc/fortunes/copyright). We only read them locally to synthesise
audio; nothing is redistributed. The `distinct` corpus also reads the example sentences of
Debian's wordnet-base package (/usr/share/wordnet/data.*, WordNet 3.0 licence in
/usr/share/doc/wordnet-base/copyright: use and copying permitted with the copyright notice).

Each cookie is split into sentences; a sentence is kept when, after normalisation, it has
3..max_words words and carries nothing a TTS engine would read differently from the reference
(acronyms, code, markup). The output order is deterministic (file order, then cookie order).
"""

from __future__ import annotations

import re
from pathlib import Path

from .text_norm import normalize_text

DEFAULT_FORTUNE_DIR = "/usr/share/games/fortunes"
DEFAULT_FORTUNE_FILES = ("fortunes", "literature", "riddles")

_ATTRIBUTION = re.compile(r"^\s*(--|\u2014|-- ?[A-Z])")
_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(]*[A-Z0-9])")
_BAD_CHARS = re.compile(r"[<>{}\[\]|\\/_^~*#\t]")
_ACRONYM = re.compile(r"\b(?!I\b|A\b|OK\b)[A-Z]{2,5}\b")
_ABBREV_END = re.compile(r"\b(Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|Capt|Col|Gen|Gov|Lt|Rev|Sgt|Mt|vs|No)\.$")


def read_cookies(path: Path) -> list[str]:
    """Return the cookies of one fortune file, attribution lines dropped, lines joined."""
    cookies, lines = [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines() + ["%"]:
        if line.strip() == "%":
            if lines:
                cookies.append(" ".join(" ".join(lines).split()))
            lines = []
        elif not _ATTRIBUTION.match(line):
            lines.append(line)
    return cookies


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences at . ! ? followed by a capital, keeping abbreviations whole."""
    pieces = _SPLIT.split(text)
    out: list[str] = []
    for piece in pieces:
        if out and _ABBREV_END.search(out[-1]):
            out[-1] = out[-1] + " " + piece
        else:
            out.append(piece)
    return [p.strip() for p in out if p.strip()]


def _keep(raw: str, min_words: int, max_words: int) -> str | None:
    """The normalised sentence, or None when a TTS engine might read it differently from the
    reference (acronyms, code, markup, colons) or its length is out of range."""
    if _BAD_CHARS.search(raw) or _ACRONYM.search(raw) or ":" in raw:
        return None
    norm = normalize_text(raw)
    return norm if min_words <= len(norm.split()) <= max_words else None


def _unique(raws, min_words: int, max_words: int, seen: set[str]) -> list[str]:
    """Kept sentences of `raws` not in `seen` (which is updated), first occurrence first."""
    out = []
    for raw in raws:
        norm = _keep(raw, min_words, max_words)
        if norm is not None and norm not in seen:
            seen.add(norm)
            out.append(norm)
    return out


def load_sentences(fortune_dir: str | Path = DEFAULT_FORTUNE_DIR,
                   files: tuple[str, ...] | list[str] = DEFAULT_FORTUNE_FILES,
                   min_words: int = 3, max_words: int = 30,
                   package: str = "fortunes-min") -> list[str]:
    """Return unique normalised sentences from the fortune files, in a deterministic order.

    Raises FileNotFoundError naming the path and the Debian package (`package`, the one the
    files come with) when a file is missing.
    """
    fortune_dir = Path(fortune_dir)
    seen: set[str] = set()
    sentences: list[str] = []
    for name in files:
        path = fortune_dir / name
        if not path.is_file():
            raise FileNotFoundError(
                f"text source {path} not found: it comes with Debian's {package} package; "
                f"install it with: sudo apt-get install -y {package}")
        raws = (raw for cookie in read_cookies(path) for raw in split_sentences(cookie))
        sentences += _unique(raws, min_words, max_words, seen)
    if not sentences:
        raise ValueError(f"no usable sentences in {fortune_dir} ({', '.join(files)})")
    return sentences


WORDNET_DIR = "/usr/share/wordnet"
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
_QUOTED = re.compile(r'"([^"]+)"')


def read_wordnet_examples(path: Path) -> list[str]:
    """The quoted usage examples of one WordNet data file (glosses follow ' | ' on each synset
    line; the licence header's lines start with two spaces)."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("  ") and " | " in line:
            out += _QUOTED.findall(line.split(" | ", 1)[1])
    return out


def load_wordnet_examples(wordnet_dir: str | Path = WORDNET_DIR, min_words: int = 3,
                          max_words: int = 30) -> list[str]:
    """Unique normalised WordNet example sentences (~40k: everyday modern English, unlike the
    quips of the fortune files), filtered like load_sentences, in file then line order."""
    wordnet_dir = Path(wordnet_dir)
    seen: set[str] = set()
    sentences: list[str] = []
    for name in WORDNET_FILES:
        path = wordnet_dir / name
        if not path.is_file():
            raise FileNotFoundError(
                f"text source {path} not found: it comes with Debian's wordnet-base package; "
                "install it with: sudo apt-get install -y wordnet-base")
        sentences += _unique(read_wordnet_examples(path), min_words, max_words, seen)
    if not sentences:
        raise ValueError(f"no usable WordNet examples in {wordnet_dir}")
    return sentences
