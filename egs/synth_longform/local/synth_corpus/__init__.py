"""Stage 0 of egs/synth_longform: the synthetic long-form corpus (recipe code, not the library).

    voices.py    offline TTS engines (espeak-ng, flite, festival, hibari), one synthesize() call
    hibari_engine.py  the in-process neural engine (PyPI hibari-tts, voice heart; training only)
    corpus.py    CorpusBuilder: text pools, conversation plans, synthesis cache, mixing
    prepare.py   the hydra entry point that local/prepare_corpus.sh runs

local/prepare_corpus.sh puts egs/synth_longform/local on PYTHONPATH and runs
`python -m synth_corpus.prepare <hydra arguments>`; the package imports unique_asr (text
sources, normalisation, atomic writes, the shared hydra config), never the other way round.
"""
