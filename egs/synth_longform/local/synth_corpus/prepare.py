"""Stage 0 of egs/synth_longform: build the corpus described by cfg.corpus into
<data_dir>/corpus (see corpus.py). Resumable; safe to interrupt.

    PYTHONPATH=egs/synth_longform/local python -m synth_corpus.prepare \
        recipe_dir=egs/synth_longform corpus=tiny
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from unique_asr.bin._common import hydra_entry, log, start, to_dict


@hydra_entry
def main(cfg: DictConfig) -> None:
    from .corpus import CorpusBuilder

    start(cfg, "prepare")
    if "corpus" not in cfg:
        raise SystemExit(f"prepare: no 'corpus' config; the recipe {cfg.recipe_dir} must provide "
                         "conf/corpus/<size>.yaml (see egs/synth_longform/conf/corpus)")
    out = Path(cfg.data_dir) / "corpus"
    info = CorpusBuilder(to_dict(cfg.corpus), out, cfg.num_workers).build()
    log.info("prepare: corpus in %s\n%s", out, json.dumps(
        {s: {k: v for k, v in d.items() if k != "recording_minutes"}
         for s, d in info["splits"].items()}, indent=1))


if __name__ == "__main__":
    main()
