"""Where a recipe's data products live; the one place that knows the layout of `data/`.

Training and decoding code should use these helpers rather than build paths by hand:

    from unique_asr.data.paths import RecipeData
    rd = RecipeData("egs/synth_longform")          # or data_dir=... to point elsewhere
    cuts = rd.load_cuts("train")                   # lhotse CutSet with fbank features
    sp = rd.load_bpe(500)                          # sentencepiece.SentencePieceProcessor
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RecipeData:
    """Paths of one recipe's data directory (default: <recipe_dir>/data)."""

    recipe_dir: Path
    data_dir: Path
    features: str = "fbank"  # stage 2's feature set: fbank, or the model's (model.feature_set)

    def __init__(self, recipe_dir: str | Path, data_dir: str | Path | None = None,
                 features: str = "fbank"):
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "recipe_dir", Path(recipe_dir).resolve())
        object.__setattr__(self, "data_dir",
                           Path(data_dir).resolve() if data_dir else self.recipe_dir / "data")

    @property
    def corpus_dir(self) -> Path:
        return self.data_dir / "corpus"

    @property
    def manifests_dir(self) -> Path:
        return self.data_dir / "manifests"

    @property
    def fbank_dir(self) -> Path:
        """Stage 2's output: data/fbank, or data/<feature set> for a model's own features."""
        return self.data_dir / self.features

    def recordings_path(self, split: str) -> Path:
        return self.manifests_dir / f"recordings_{split}.jsonl.gz"

    def supervisions_path(self, split: str) -> Path:
        return self.manifests_dir / f"supervisions_{split}.jsonl.gz"

    def cuts_path(self, split: str) -> Path:
        """One cut per whole recording, with its supervisions and 80-dim fbank features."""
        return self.fbank_dir / f"cuts_{split}.jsonl.gz"

    def lang_dir(self, vocab_size: int, model_type: str = "bpe") -> Path:
        """lang_bpe_<N> (icefall's name), lang_unigram_<N>, or lang_char (sentencepiece's char
        model: its size is the character set, whatever vocab_size says)."""
        if model_type == "char":
            return self.data_dir / "lang_char"
        return self.data_dir / f"lang_{model_type}_{int(vocab_size)}"

    def bpe_model_path(self, vocab_size: int, model_type: str = "bpe") -> Path:
        return self.lang_dir(vocab_size, model_type) / "bpe.model"

    def load_cuts(self, split: str):
        """Load the cuts of a split; the error names stage 2 when they are missing."""
        from lhotse import CutSet

        path = self.cuts_path(split)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run stage 2 (features) first, e.g. "
                                    f"./run.sh --recipe {self.recipe_dir} --stage 0 --stop-stage 2")
        return CutSet.from_file(path)

    def load_bpe(self, vocab_size: int, model_type: str = "bpe"):
        """Load the sentencepiece model; the error names stage 3 when it is missing."""
        import sentencepiece as spm

        path = self.bpe_model_path(vocab_size, model_type)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run stage 3 (BPE) with "
                                    f"data.lang.vocab_size={vocab_size} "
                                    f"data.lang.model_type={model_type}")
        return spm.SentencePieceProcessor(model_file=str(path))
