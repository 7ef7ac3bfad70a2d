"""Transcribe your own recordings with a trained model: transcripts, per-recording speed and,
given references, stage 6's WER files.

    python -m unique_asr.bin.transcribe transcribe.model=exp/tiny/export audio/*.wav
    python -m unique_asr.bin.transcribe transcribe.model=egs/synth_longform/exp/tiny my_dir/ \\
        wav.scp recordings.jsonl.gz transcribe.refs=refs.txt decode.method=beam --skip-bad

Bare arguments are inputs (transcribe.inputs: files, globs, directories, wav.scp-style lists,
lhotse recordings or cuts manifests); `--skip-bad` is data.skip_bad=true; everything else is a
hydra override, the decode.* keys of stage 5 included. transcribe.model is an exported model
(bin.export) or a training run's directory, whose newest checkpoint is exported to <dir>/export
first. Audio of any rate and channel count is heard mono at the model's rate and its features
are computed as stage 2 computes them, so a recording gets stage 5's transcript, token for
token. Outputs in transcribe.out_dir: scoring/transcripts.py (written as recordings finish),
hyps-/meta-<set>-<tag> files and, with transcribe.refs, recogs/errs/wer-summary-<set>-<tag>.
"""

from __future__ import annotations

import logging
import sys
from functools import partial
from pathlib import Path

from omegaconf import DictConfig

from unique_asr.bin._common import hydra_entry, start, to_dict

log = logging.getLogger("unique_asr.transcribe")

# hydra's options that take the next argument as their value
_HYDRA_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name",
                      "-cn", "--config-dir", "-cd", "--experimental-rerun",
                      "--shell-completion", "-sc"}


def _quoted(path: str) -> str:
    return "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cli_args(argv: list[str]) -> list[str]:
    """Hydra's arguments of a command line: bare arguments become transcribe.inputs and
    --skip-bad data.skip_bad=true."""
    out, inputs, prev = [], [], ""
    for a in argv:
        if a == "--skip-bad":
            out.append("data.skip_bad=true")
        elif a.startswith("-") or "=" in a or prev in _HYDRA_VALUE_FLAGS:
            out.append(a)
        else:
            inputs.append(a)
        prev = a
    if inputs:
        if any(a.split("=", 1)[0].lstrip("+") == "transcribe.inputs" for a in out):
            raise SystemExit("ERROR: give the inputs either as arguments or as "
                             "transcribe.inputs=[...], not both")
        out.append("transcribe.inputs=[" + ",".join(_quoted(p) for p in inputs) + "]")
    return out


def model_dir(cfg: DictConfig, dcfg) -> Path:
    """The exported model to load: transcribe.model (or decode.model_dir) itself, or, for a
    training run's directory, its export/ (written from its newest checkpoint when that
    checkpoint is newer than the export)."""
    from unique_asr.bin.export import export_checkpoint
    from unique_asr.decoding.export import is_current, is_export
    from unique_asr.decoding.layout import find_checkpoint

    target = Path(cfg.transcribe.model or dcfg.model_dir or "")
    if is_export(target):
        return target
    if not target.is_dir():
        raise FileNotFoundError(f"transcribe.model={target}: no such directory (an exported "
                                "model, bin.export, or a training run's directory)")
    ck = find_checkpoint(target, dcfg.checkpoint)
    out = target / "export"
    if not is_current(out, ck):
        export_checkpoint(cfg, dcfg, ck, out)
    return out


def _score(out_dir: Path, set_name: str, tag: str, rows: list[dict], refs: dict[str, str]):
    """Stage 6's files for the recordings that have a reference."""
    from unique_asr.scoring.run import score_run

    missing = [r["id"] for r in rows if r["id"] not in refs]
    if missing:
        log.warning("%d recordings have no reference and are not scored: %s", len(missing),
                    missing[:10])
    score, paths = score_run(out_dir, set_name, tag)
    print(f"{set_name} {tag}: WER {100 * score.wer:.2f}% [ {score.errors} / {score.nref}, "
          f"{score.ins} ins, {score.dels} del, {score.sub} sub ] -> {paths['wer-summary']}")
    return score


def run(cfg: DictConfig) -> dict:
    from unique_asr.bin.decode import command_line, device_of, run_meta
    from unique_asr.data.references import read_references
    from unique_asr.data.user_inputs import resolve_inputs
    from unique_asr.decoding.config import DecodeConfig, TranscribeConfig
    from unique_asr.decoding.export import load_exported
    from unique_asr.decoding.layout import run_tag
    from unique_asr.decoding.ngram_lm import lm_for_decoding
    from unique_asr.decoding.runner import AudioInput, decode_cuts
    from unique_asr.models.whisper_features import extractor_for
    from unique_asr.scoring.hyps import hyps_path, meta_path, write_hyps, write_meta
    from unique_asr.scoring.transcripts import TranscriptWriter

    dcfg = DecodeConfig.from_dict(to_dict(cfg.decode))
    tcfg = TranscribeConfig.from_dict(to_dict(cfg.transcribe))
    skip_bad = bool(cfg.data.skip_bad)
    inputs = resolve_inputs(tcfg.inputs, skip_bad)  # input problems show before the model loads
    refs = read_references(tcfg.refs) if tcfg.refs else None
    device = device_of(dcfg.device)
    exported = model_dir(cfg, dcfg)
    ex = load_exported(exported, device, dcfg.dtype)
    audio = AudioInput(ex.sample_rate, ex.num_mel_bins, skip_bad,
                       partial(extractor_for, ex.model.cfg))
    lm, lexicon = lm_for_decoding(dcfg, ex.tokenizer, ex.bpe_path)
    out_dir, tag = Path(tcfg.out_dir), run_tag(dcfg)
    writer = TranscriptWriter(out_dir)
    writer.add([], inputs.skipped)
    log.info("transcribing %d recordings (%.1f s) with %s -> %s", len(inputs.cuts),
             sum(c.duration for c in inputs.cuts), exported, out_dir)
    res = decode_cuts(ex.model, inputs.cuts, ex.tokenizer, dcfg, device, lm, lexicon, audio,
                      group_seconds=tcfg.group_seconds,
                      on_group=lambda r: writer.add(r.rows, r.skipped))
    res.skipped = inputs.skipped + res.skipped
    rows = [{**r, "ref": refs[r["id"]]} for r in res.rows if r["id"] in refs] if refs else \
        res.rows
    write_hyps(hyps_path(out_dir, tcfg.set_name, tag), rows)
    meta = run_meta(ex.model_cfg.get("name", "model"), dcfg, ex.info["checkpoint"], device, res,
                    ex.model_cfg, command_line("transcribe"))
    write_meta(meta_path(out_dir, tcfg.set_name, tag), {**meta, "export": str(exported)})
    sp = res.speed
    log.info("%d recordings (%.1f s audio), RTFx %.1f -> %s", len(res.rows), sp.audio_seconds,
             sp.rtfx, writer.paths["text"])
    for s in res.skipped:
        log.warning("skipped %s: %s", s.get("input", s.get("id")), s["error"])
    if res.skipped:
        log.warning("skipped %d inputs (listed in %s)", len(res.skipped), writer.paths["skipped"])
    score = _score(out_dir, tcfg.set_name, tag, res.rows, refs) if refs is not None else None
    return {"rows": res.rows, "skipped": res.skipped, "speed": sp, "score": score}


@hydra_entry
def _main(cfg: DictConfig) -> None:
    from unique_asr.data.features import BadInputError

    start(cfg, "transcribe")
    try:
        run(cfg)
    except BadInputError as e:  # names the file and the problem: no traceback needed
        hint = "" if "skip" in str(e) else " (--skip-bad or data.skip_bad=true skips it)"
        print(f"ERROR: {e}{hint}", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    sys.argv = [sys.argv[0], *cli_args(sys.argv[1:])]
    _main()


if __name__ == "__main__":
    main()
