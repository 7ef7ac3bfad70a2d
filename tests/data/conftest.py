"""Helpers shared by the data tests: build the tiny synth_longform corpus the way run.sh does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs" / "synth_longform"


def hydra_args(data_dir: Path, *extra: str) -> list[str]:
    return [f"recipe_dir={RECIPE}", f"data_dir={data_dir}", f"exp_dir={data_dir / 'exp'}",
            "num_workers=2", f"hydra.searchpath=[file://{RECIPE}/conf]", "corpus=tiny", *extra]


def build_tiny(data_dir: Path, *extra: str) -> None:
    """Stage 0 (synthesis) on the tiny size, then stage 1 (manifests), in subprocesses."""
    for module in ("prepare", "manifests"):
        r = subprocess.run([sys.executable, "-m", f"unique_asr.bin.{module}",
                            *hydra_args(data_dir, *extra)], capture_output=True, text=True,
                           cwd=ROOT, check=False)
        assert r.returncode == 0, f"{module} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


@pytest.fixture(scope="session")
def tiny_builder():
    """The build_tiny function (fixtures are how pytest shares helpers without packages)."""
    return build_tiny
