"""Helpers of the real-corpus recipe tests (librispeech_longform, tedlium3, earnings21): audio
for mock corpora, a recipe's run.sh in a subprocess, and a random tiny checkpoint for a short
decode. Fixtures return the functions (pytest's way to share helpers without packages)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def tone(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    """A short distinct sound: a seeded chirp over noise (values differ between seeds)."""
    g = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    f0 = 150 + 40 * (seed % 9)
    return (0.3 * np.sin(2 * np.pi * (f0 + 60 * t) * t) + 0.02 * g.standard_normal(len(t))
            ).astype(np.float32)


def run_recipe(recipe: str, tmp: Path, *args: str, timeout: float = 300):
    """egs/<recipe>/run.sh with data and exp under tmp (no environment set-up)."""
    return subprocess.run(
        [str(ROOT / "egs" / recipe / "run.sh"), "--setup", "false", "--data-dir",
         str(tmp / "data"), "--exp-dir", str(tmp / "exp"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def random_checkpoint(exp_dir: Path, bpe_model: Path) -> Path:
    """A randomly initialised tiny model at <exp_dir>/tiny/last.pt (train.tag=tiny), as if
    stage 4 had run: enough for stages 5-6 to decode and score whole recordings."""
    import sentencepiece as spm
    import torch

    from unique_asr.models import ModelConfig, build_model

    sp = spm.SentencePieceProcessor(model_file=str(bpe_model))
    torch.manual_seed(0)
    cfg = ModelConfig(n_text=sp.get_piece_size())
    path = exp_dir / "tiny" / "last.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": build_model(cfg).state_dict(), "model_cfg": cfg.to_dict(),
                "bpe_model": str(bpe_model)}, path)
    return path


def decode_fast(tmp: Path) -> list[str]:
    """Overrides for a short decode whose RESULTS.md row goes under tmp, not into the recipe."""
    return ["decode.max_tokens_per_second=2", "decode.min_new_tokens=2",
            f"decode.results_md={tmp}/RESULTS.md"]


@pytest.fixture(scope="session")
def recipe_tools():
    """tone, run_recipe, random_checkpoint and the decode overrides that keep it short."""
    return {"tone": tone, "run_recipe": run_recipe, "random_checkpoint": random_checkpoint,
            "decode_fast": decode_fast}
