"""The one text normaliser for references and hypotheses (ASR scoring imports it).

Policy (documented in egs/synth_longform/README.md and, for money and decimals, in
egs/earnings21/README.md; keep them in sync):
- Non-speech markers in angle, square or curly brackets are dropped ("<unk>", "[NOISE]",
  "{BREATH}": TED-LIUM's and Kaldi's conventions), on references and hypotheses alike.
- Unicode is folded to ASCII (accents dropped, curly quotes and dashes made plain).
- Common abbreviations are expanded ("Mr." -> "mister", "Dr." -> "doctor", "etc." -> "et cetera").
- Numbers are spelled out: cardinals ("42" -> "forty two"), ordinals ("3rd" -> "third"),
  decimals ("3.5" -> "three point five"), thousands separators ("1,000" -> "one thousand"),
  years 1100-1999 and 2010-2099 read in pairs ("1984" -> "nineteen eighty four"), decades
  ("1960s" -> "nineteen sixties"), "50%" -> "fifty percent", "5.5%" -> "five point five
  percent".
- Money is read the way it is said: "$5" -> "five dollars", "$1" -> "one dollar", "$5.2
  billion" -> "five point two billion dollars" (thousand, million, billion, trillion),
  "$3.25" -> "three dollars twenty five cents", "$0.25" -> "twenty five cents".
- "&" -> "and", "+" -> "plus", "=" -> "equals", "@" -> "at".
- Everything is lower case. The only punctuation kept is an apostrophe between two letters
  ("don't", "o'clock"); every other mark, hyphens included, becomes a word break.
- Whitespace is collapsed to single spaces, no leading/trailing space.

The output alphabet is [a-z' ], so normalize_text is idempotent:
normalize_text(normalize_text(x)) == normalize_text(x).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_text", "number_to_words", "ordinal_to_words"]

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]

_ORDINAL_IRREGULAR = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}

_ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miz", "dr": "doctor", "st": "saint",
    "jr": "junior", "sr": "senior", "prof": "professor", "capt": "captain", "col": "colonel",
    "gen": "general", "gov": "governor", "lt": "lieutenant", "rev": "reverend", "sgt": "sergeant",
    "mt": "mount", "vs": "versus", "etc": "et cetera",
}
_ABBREV_RE = re.compile(r"\b(" + "|".join(_ABBREVIATIONS) + r")\.(?=\s|$)", re.IGNORECASE)
# "no." only means "number" before a digit; elsewhere it is the word "no" ending a sentence.
_NO_RE = re.compile(r"\bno\.(?=\s*\d)", re.IGNORECASE)
_LATIN_RE = [(re.compile(r"\be\.\s?g\.", re.IGNORECASE), " for example "),
             (re.compile(r"\bi\.\s?e\.", re.IGNORECASE), " that is ")]

_MARKER_RE = re.compile(r"<[^<>]*>|\[[^\[\]]*\]|\{[^{}]*\}")
_SCALE_WORDS = "thousand|million|billion|trillion"

_CHAR_MAP = {
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
    "\u2026": "...", "`": "'",
}


def _under_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        if n % 10:
            words.append(_ONES[n % 10])
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_to_words(n: int) -> str:
    """Spell a non-negative integer in English words: 1205 -> 'one thousand two hundred five'."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 1000:
        return " ".join(_under_thousand(n))
    words: list[str] = []
    for value, name in _SCALES:
        if n >= value:
            words += [number_to_words(n // value), name]
            n %= value
    if n:
        words += _under_thousand(n)
    return " ".join(words)


def ordinal_to_words(n: int) -> str:
    """Spell an ordinal: 3 -> 'third', 21 -> 'twenty first', 40 -> 'fortieth'."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        words[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _year_to_words(n: int) -> str:
    hi, lo = divmod(n, 100)
    if lo == 0:
        return number_to_words(hi) + " hundred"
    lo_words = number_to_words(lo) if lo >= 10 else "oh " + number_to_words(lo)
    return number_to_words(hi) + " " + lo_words


def _is_year(n: int) -> bool:
    return 1100 <= n <= 1999 or 2010 <= n <= 2099


def _plural(words: str) -> str:
    head, _, last = words.rpartition(" ")
    last = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return (head + " " + last).strip()


def _int_words(digits: str) -> str:
    n = int(digits.replace(",", ""))
    if "," not in digits and len(digits) == 4 and _is_year(n):
        return _year_to_words(n)
    return number_to_words(n)


def _decimal_words(whole: str, frac: str) -> str:
    return "{} point {}".format(_int_words(whole), " ".join(_ONES[int(d)] for d in frac))


def _money(m: re.Match) -> str:
    """$<amount>[.<fraction>][ <scale word>] -> words with 'dollars' at the end, as said."""
    whole, frac, scale = m.group(1), m.group(2), m.group(3)
    if scale:
        amount = _decimal_words(whole, frac) if frac else _int_words(whole)
        return f" {amount} {scale.lower()} dollars "
    if frac:
        if len(frac) != 2:
            return f" {_decimal_words(whole, frac)} dollars "
        n = int(whole.replace(",", ""))
        cents = f"{number_to_words(int(frac))} cent{'' if int(frac) == 1 else 's'}"
        if n == 0:
            return f" {cents} "
        return f" {_int_words(whole)} dollar{'' if n == 1 else 's'} {cents} "
    n = int(whole.replace(",", ""))
    return f" {_int_words(whole)} dollar{'' if n == 1 else 's'} "


def _expand_numbers(text: str) -> str:
    text = re.sub(r"\$(\d[\d,]*)(?:\.(\d+))?(?:\s+(" + _SCALE_WORDS + r")\b)?", _money, text,
                  flags=re.IGNORECASE)
    text = re.sub(r"(\d[\d,]*)(?:\.(\d+))?\s?%", lambda m: " {} percent ".format(
        _decimal_words(m.group(1), m.group(2)) if m.group(2) else _int_words(m.group(1))), text)
    text = re.sub(r"(\d+)(?:st|nd|rd|th)\b", lambda m: f" {ordinal_to_words(int(m.group(1)))} ",
                  text, flags=re.IGNORECASE)
    text = re.sub(r"(\d+)'?s\b", lambda m: f" {_plural(_int_words(m.group(1)))} ", text)
    text = re.sub(r"(\d+)\.(\d+)", lambda m: f" {_decimal_words(m.group(1), m.group(2))} ", text)
    text = re.sub(r"\d{1,3}(?:,\d{3})+|\d+", lambda m: f" {_int_words(m.group(0))} ", text)
    return text


def normalize_text(text: str) -> str:
    """Normalise text for ASR references and hypotheses (policy in the module docstring)."""
    text = _MARKER_RE.sub(" ", text)
    for src, dst in _CHAR_MAP.items():
        text = text.replace(src, dst)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    for pattern, repl in _LATIN_RE:
        text = pattern.sub(repl, text)
    text = _NO_RE.sub(" number ", text)
    text = _ABBREV_RE.sub(lambda m: " " + _ABBREVIATIONS[m.group(1).lower()] + " ", text)
    text = text.replace("&", " and ").replace("+", " plus ").replace("=", " equals ")
    text = text.replace("@", " at ")
    text = _expand_numbers(text)
    text = text.lower()
    text = re.sub(r"(?<=[a-z])'(?=[a-z])", "\x00", text)  # protect word-internal apostrophes
    text = re.sub(r"[^a-z\x00]+", " ", text).replace("\x00", "'")
    return " ".join(text.split())
