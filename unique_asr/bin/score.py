"""Stage 6: score a decoding run -> recogs/errs/wer-summary files and a RESULTS.md row.

    python -m unique_asr.bin.score recipe_dir=egs/synth_longform        # the default decode
    python -m unique_asr.bin.score decode.sparse.method=unique decode.sparse.budget=256
    python -m unique_asr.bin.score decode.out_dir=DIR decode.tag=TAG decode.results_md=null

Takes the same overrides as bin.decode (decoding/layout.py finds the run from them). WER is
computed after unique_asr.data.text_norm.normalize_text on both sides.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from unique_asr.bin._common import hydra_entry, start, to_dict

log = logging.getLogger("unique_asr.score")


def run(cfg: DictConfig) -> dict:
    from unique_asr.decoding.config import DecodeConfig
    from unique_asr.decoding.layout import run_out_dir, run_tag
    from unique_asr.scoring.run import score_run

    dcfg = DecodeConfig.from_dict(to_dict(cfg.decode))
    out_dir, tag = run_out_dir(dcfg), run_tag(dcfg)
    results = {}
    for test_set in dcfg.sets:
        score, paths = score_run(out_dir, test_set, tag, results_md=dcfg.results_md)
        print(f"{test_set} {tag}: WER {100 * score.wer:.2f}% [ {score.errors} / {score.nref}, "
              f"{score.ins} ins, {score.dels} del, {score.sub} sub ] -> {paths['wer-summary']}")
        results[test_set] = score.wer
    return results


@hydra_entry
def main(cfg: DictConfig) -> None:
    start(cfg, "score")
    run(cfg)


if __name__ == "__main__":
    main()
