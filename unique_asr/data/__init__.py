"""Data side of unique_asr: text sources and normalisation, manifests, fbank, BPE.

Interface for training/decoding code (stable; keep in sync with egs/*/README.md):

    from unique_asr.data.paths import RecipeData
    rd = RecipeData(recipe_dir)            # data under <recipe_dir>/data unless data_dir= given
    rd.cuts_path("train")                  # <data>/fbank/cuts_train.jsonl.gz (splits: train/dev/test)
    cuts = rd.load_cuts("train")           # lhotse CutSet: ONE cut per whole recording, with all
                                           # its sentence supervisions (text, speaker, exact times)
                                           # and 80-dim fbank (10 ms hop) stored beside it
    rd.bpe_model_path(500)                 # <data>/lang_bpe_500/bpe.model (sentencepiece)
    sp = rd.load_bpe(500)                  # SentencePieceProcessor; tokens.txt sits beside it
    rd.fbank_dir / "global_stats_train.json"   # per-dim mean/std of train fbank
                                           # (unique_asr.data.fbank.load_global_stats)

Texts in manifests/cuts are already normalised with
`unique_asr.data.text_norm.normalize_text(str) -> str`, the one normaliser that scoring
applies to hypotheses and references (idempotent; output alphabet [a-z' ]).

Hydra: cfg.recipe_dir, cfg.data_dir, cfg.data.lang.vocab_size, cfg.data.splits locate all of it
(conf/config.yaml, conf/data/default.yaml).
"""
