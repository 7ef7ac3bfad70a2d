"""real_en's build: the packages local/fetch_real_en.sh unpacked -> 16-kHz mono WAVs and lhotse
manifests. Each utterance is its own recording with one supervision covering all of it, which
is what bin/transcribe scores a whole recording against.

    PYTHONPATH=egs/synth_longform/local python -m real_en.prepare \\
        --download-dir egs/synth_longform/data/real_en/download \\
        --out-dir egs/synth_longform/data/real_en

Writes <out_dir>/wav/<id>.wav, <out_dir>/real_en_{recordings,supervisions,cuts}.jsonl.gz and
<out_dir>/info.json (the summary printed at the end: utterances, minutes, words and speakers per
source). Every source that is downloaded is built unless --sources names some; a source named
there must be downloaded.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

from unique_asr.data.atomic import write_audio, write_json, write_manifest

from .sources import FETCH, RATE, READERS, SourceMissing

log = logging.getLogger(__name__)

RECIPE = Path(__file__).resolve().parents[2]
DEFAULT_OUT = RECIPE / "data" / "real_en"
DEFAULT_DOWNLOAD = DEFAULT_OUT / "download"
PREFIX = "real_en"


def prepare_real_en(download_dir: str | Path, out_dir: str | Path,
                    sources: list[str] | None = None, progress: bool = False):
    """Build real_en from `download_dir` into `out_dir`; return its CutSet (one cut per
    recording, cut id = recording id = supervision id).

    sources None builds every source whose package is downloaded and logs the ones that are
    not; a list builds exactly those, and one that is not downloaded raises SourceMissing.
    No source at all raises FileNotFoundError."""
    from lhotse import CutSet, MonoCut, Recording, SupervisionSegment
    from tqdm import tqdm

    download_dir, out_dir = Path(download_dir), Path(out_dir).resolve()
    names = list(READERS) if sources is None else list(sources)
    unknown = sorted(set(names) - set(READERS))
    if unknown:
        raise ValueError(f"unknown real_en source(s) {unknown}; there are {list(READERS)}")
    utts = []
    for name in names:
        try:
            utts += READERS[name](download_dir)
        except SourceMissing as e:
            if sources is not None:
                raise
            log.warning("%s; left out", e)
    if not utts:
        raise FileNotFoundError(f"no real_en source is downloaded under {download_dir}; run "
                                f"{FETCH} {download_dir}")
    repeated = [i for i, n in Counter(u.id for u in utts).items() if n > 1]
    if repeated:
        raise ValueError(f"utterance ids given twice: {repeated[:10]}")
    recordings, supervisions, cuts = [], [], []
    for u in tqdm(utts, desc="real_en", unit="utt", disable=not progress):
        path = out_dir / "wav" / f"{u.id}.wav"
        write_audio(path, u.read(), RATE)
        rec = Recording.from_file(path, recording_id=u.id)
        sup = SupervisionSegment(
            id=u.id, recording_id=u.id, start=0.0, duration=rec.duration, channel=0,
            text=u.text, language="English", speaker=u.speaker,
            custom={"source": u.source, **u.custom})
        recordings.append(rec)
        supervisions.append(sup)
        cuts.append(MonoCut(id=u.id, start=0.0, duration=rec.duration, channel=0,
                            recording=rec, supervisions=[sup]))
    cuts = CutSet.from_cuts(cuts)
    write_manifest(out_dir / f"{PREFIX}_recordings.jsonl.gz", recordings)
    write_manifest(out_dir / f"{PREFIX}_supervisions.jsonl.gz", supervisions)
    write_manifest(out_dir / f"{PREFIX}_cuts.jsonl.gz", cuts)
    write_json(out_dir / "info.json", summary(cuts))
    return cuts


def _totals(sups: list) -> dict:
    return {"utterances": len(sups), "minutes": round(sum(s.duration for s in sups) / 60, 2),
            "words": sum(len(s.text.split()) for s in sups),
            "speakers": len({s.speaker for s in sups})}


def summary(cuts) -> dict:
    """Utterances, minutes, words and speakers per source package and in all."""
    sups = [s for c in cuts for s in c.supervisions]
    by_source: dict[str, list] = {}
    for s in sups:
        by_source.setdefault(s.custom["source"], []).append(s)
    return {"sources": {k: _totals(v) for k, v in by_source.items()}, "total": _totals(sups)}


def format_summary(info: dict) -> str:
    rows = [*info["sources"].items(), ("TOTAL", info["total"])]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {t['utterances']:4d} utts  {t['minutes']:6.2f} min  "
                     f"{t['words']:5d} words  {t['speakers']} speakers" for name, t in rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m real_en.prepare", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0] + f"\n\nDownload the packages first: {FETCH}.")
    ap.add_argument("--download-dir", type=Path, default=DEFAULT_DOWNLOAD,
                    help="where fetch_real_en.sh put the packages (default: %(default)s)")
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT,
                    help="where the wavs and manifests go (default: %(default)s)")
    ap.add_argument("--sources", nargs="+", choices=list(READERS),
                    help="build only these, each of which must be downloaded (default: every "
                         "source that is downloaded)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        cuts = prepare_real_en(args.download_dir, args.out_dir, args.sources,
                               progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as e:  # they name the file and the fix
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(1)
    print(format_summary(summary(cuts)))
    print(f"manifests: {args.out_dir.resolve()}/{PREFIX}_{{recordings,supervisions,cuts}}"
          ".jsonl.gz")


if __name__ == "__main__":
    main()
