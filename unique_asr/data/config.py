"""Typed settings of the data stages (hydra group `data`): each default is written here once.

Stages 1-3 read them through the entry points; library functions take plain arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FbankConfig:
    num_mel_bins: int = 80            # 25 ms window, 10 ms hop (lhotse Fbank defaults)
    storage: str = "numpy_files"      # numpy_files | lilcom_chunky (needs the lilcom package)


@dataclass
class LangConfig:
    vocab_size: int = 500             # sentencepiece vocabulary; data/lang_bpe_<vocab_size>/
    model_type: str = "bpe"           # bpe | unigram | char (char: data/lang_char/)
    character_coverage: float = 1.0
    # more text for the decoding n-gram LM (the lang dir's lm_text.txt): fortune-format files in
    # lm_extra_dir, normalised like the transcripts; any dev or test transcript is dropped
    lm_extra_files: list[str] = field(default_factory=list)
    lm_extra_dir: str = "/usr/share/games/fortunes"
    lm_extra_package: str = "fortunes"  # the Debian package the files come with (named in errors)


@dataclass
class DataConfig:
    splits: list[str] = field(default_factory=lambda: ["train", "dev", "test"])
    sample_rate: int = 16000
    fbank: FbankConfig = field(default_factory=FbankConfig)
    lang: LangConfig = field(default_factory=LangConfig)
    skip_bad: bool = False            # true: skip unreadable audio/feature files (named in logs)
