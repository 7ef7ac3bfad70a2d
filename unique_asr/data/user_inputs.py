"""A user's recordings as lhotse cuts: audio files, globs, directories, wav.scp-style lists and
lhotse recordings or cuts manifests, in any mix.

Why a module of its own: bin.transcribe takes whatever a user has, and every problem must be
named with its file (and line) before any decoding starts. A problem raises BadInputError, or,
with skip_bad, is listed in `Inputs.skipped` and the rest goes on. Audio is not read here
beyond its header; data.features reads it (mono, at the model's rate) when it is decoded.

Recording ids: the file name without its suffix (a list or manifest gives its own). Two inputs
with one id are refused, naming both (results are written per id); one file named twice counts
once.
"""

from __future__ import annotations

import glob
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

from unique_asr.data.features import BadInputError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
MANIFEST_SUFFIXES = (".jsonl", ".jsonl.gz", ".json")
LIST_SUFFIXES = (".scp", ".list", ".lst", ".txt")


@dataclass
class Inputs:
    cuts: list = field(default_factory=list)  # lhotse MonoCut/MultiCut, sorted by id
    skipped: list[dict] = field(default_factory=list)  # {"input", "error"}


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(MANIFEST_SUFFIXES):
        return "manifest"
    if name.endswith(LIST_SUFFIXES):
        return "list"
    return "audio"  # AUDIO_SUFFIXES, or anything else the audio backend may read


def _audio_cut(path: Path, rec_id: str | None = None, where: str | None = None):
    """A whole-recording cut of one audio file; BadInputError when its header cannot be read or
    it holds no samples."""
    from lhotse import Recording

    where = where or str(path)
    if not path.is_file():
        raise BadInputError(f"{where}: audio file {path} does not exist")
    try:
        rec = Recording.from_file(path, recording_id=rec_id or path.stem)
    except Exception as e:
        raise BadInputError(f"{where}: cannot read audio {path} ({type(e).__name__}: {e})") from e
    if rec.num_samples == 0:
        raise BadInputError(f"{where}: audio {path} is empty (0 samples)")
    return rec.to_cut()


def _list_cuts(path: Path):
    """`<id> <path>` lines (Kaldi wav.scp) or bare `<path>` lines; relative paths are taken from
    the list's directory. Yields (where, cut or BadInputError)."""
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{n}"
        parts = line.split(maxsplit=1)
        rec_id, target = (parts if len(parts) == 2 else (None, parts[0]))
        if target.endswith("|"):
            yield where, BadInputError(f"{where}: commands (`... |`) are not supported; "
                                       "write the audio to a file and list its path")
            continue
        audio = Path(target)
        audio = audio if audio.is_absolute() else path.parent / audio
        try:
            yield where, _audio_cut(audio, rec_id, where)
        except BadInputError as e:
            yield where, e


def _manifest_lines(path: Path):
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            text = f.read()
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise BadInputError(f"{path}: cannot read the manifest ({type(e).__name__}: {e})") from e
    if path.name.lower().endswith(".json") and text.lstrip().startswith("["):
        yield from ((f"{path}", d) for d in json.loads(text))  # one JSON array
        return
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield f"{path}:{n}", json.loads(line)
            except json.JSONDecodeError as e:
                yield f"{path}:{n}", BadInputError(f"{path}:{n}: not a JSON line ({e})")


_NUMBER = (int, float)
RECORDING_FIELDS = {"id": str, "sources": list, "sampling_rate": int, "num_samples": int,
                    "duration": _NUMBER}
RECORDING_OPTIONAL = {"channel_ids", "transforms", "custom"}
CUT_FIELDS = {"id": str, "start": _NUMBER, "duration": _NUMBER, "channel": (int, list),
              "recording": dict}
CUT_OPTIONAL = {"type", "supervisions", "features", "custom"}


def _field_problem(d: dict, fields: dict, optional: set, what: str, prefix: str = "") -> str | None:
    """The first missing, mistyped or unknown field of a manifest object, in words."""
    for name, typ in fields.items():
        if name not in d:
            return f"{what} without the field '{prefix}{name}'"
        v = d[name]
        if not isinstance(v, typ) or isinstance(v, bool):
            want = "/".join(t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)))
            return f"field '{prefix}{name}' is {v!r}, expected {want}"
    unknown = sorted(set(d) - set(fields) - optional)
    if unknown:
        return f"{what} with unknown fields {[prefix + k for k in unknown]}"
    return None


def _problem(d: dict) -> str | None:
    if "type" in d:  # a cut
        if d["type"] not in ("MonoCut", "MultiCut"):
            return f"cut of type {d['type']!r}: only MonoCut and MultiCut are whole recordings"
        return (_field_problem(d, CUT_FIELDS, CUT_OPTIONAL, "cut")
                or _field_problem(d["recording"], RECORDING_FIELDS, RECORDING_OPTIONAL,
                                  "cut's recording", "recording."))
    if "recording_id" in d and "sources" not in d:
        return ("a supervision, not a recording or cut (pass supervisions as references: "
                "transcribe.refs=FILE)")
    return _field_problem(d, RECORDING_FIELDS, RECORDING_OPTIONAL, "recording")


def _manifest_item(where: str, d):
    """A recording or cut of a manifest line, checked field by field; BadInputError naming the
    line and its problem (a missing, mistyped or unknown field, a supervision)."""
    from lhotse import Recording
    from lhotse.qa import validate
    from lhotse.serialization import deserialize_item

    if not isinstance(d, dict):
        raise BadInputError(f"{where}: expected a JSON object, got {type(d).__name__}")
    problem = _problem(d)
    if problem:
        raise BadInputError(f"{where}: {problem}")
    try:
        item = deserialize_item(dict(d))
        validate(item)
    except Exception as e:
        raise BadInputError(f"{where}: not a valid lhotse recording or cut "
                            f"({type(e).__name__}: {e})") from e
    return item.to_cut() if isinstance(item, Recording) else item


def _manifest_cuts(path: Path):
    for where, d in _manifest_lines(path):
        if isinstance(d, BadInputError):
            yield where, d
            continue
        try:
            yield where, _manifest_item(where, d)
        except BadInputError as e:
            yield where, e


def _sources(cut) -> tuple:
    rec = getattr(cut, "recording", None)
    if rec is None:
        return (cut.id,)
    return tuple(str(Path(s.source).resolve()) if s.type == "file" else str(s.source)
                 for s in rec.sources)


def _expand(spec: str) -> list[Path]:
    """The paths one input names: itself, a glob's matches or a directory's audio files."""
    p = Path(spec)
    if p.is_dir():
        found = sorted(f for f in p.rglob("*") if f.is_file()
                       and f.name.lower().endswith(AUDIO_SUFFIXES) and not f.name.startswith("."))
        if not found:
            raise BadInputError(f"{spec}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in "
                                "this directory")
        return found
    if p.exists():
        return [p]
    if glob.has_magic(spec):
        found = sorted(Path(f) for f in glob.glob(spec, recursive=True) if Path(f).is_file())
        if not found:
            raise BadInputError(f"{spec}: no file matches this pattern")
        return found
    raise BadInputError(f"{spec}: no such file or directory")


def _cuts_of(path: Path):
    kind = _kind(path)
    if kind == "manifest":
        yield from _manifest_cuts(path)
    elif kind == "list":
        yield from _list_cuts(path)
    else:
        try:
            yield str(path), _audio_cut(path)
        except BadInputError as e:
            yield str(path), e


def resolve_inputs(specs: list[str], skip_bad: bool = False) -> Inputs:
    """Every recording the inputs name, sorted by id; each problem raises BadInputError (or,
    skip_bad, is listed in `skipped`). Duplicate ids always raise."""
    if not specs:
        raise BadInputError("no inputs: give audio files, globs, directories, a wav.scp-style "
                            "list or a lhotse manifest (transcribe.inputs=[...])")
    out, seen = Inputs(), {}

    def bad(where: str, e: BadInputError) -> None:
        if not skip_bad:
            raise e
        out.skipped.append({"input": where, "error": str(e)})

    for spec in specs:
        try:
            paths = _expand(str(spec))
        except BadInputError as e:
            bad(str(spec), e)
            continue
        for path in paths:
            for where, cut in _cuts_of(path):
                if isinstance(cut, BadInputError):
                    bad(where, cut)
                    continue
                src = _sources(cut)
                if cut.id in seen:
                    if seen[cut.id][1] == src:
                        continue  # the same file named twice (a glob and a directory, say)
                    raise BadInputError(f"recording id {cut.id!r} is given twice: "
                                        f"{seen[cut.id][0]} and {where}; rename one or list them "
                                        "with their own ids in a wav.scp (not skipped by "
                                        "--skip-bad: which one is meant?)")
                seen[cut.id] = (where, src)
                out.cuts.append(cut)
    out.cuts.sort(key=lambda c: c.id)
    return out
