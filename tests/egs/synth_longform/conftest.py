"""Helpers shared by the synth_longform recipe tests: its stage-0 package (local/synth_corpus)
on sys.path, and the tiny corpus built the way run.sh builds it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
RECIPE = ROOT / "egs" / "synth_longform"
LOCAL = RECIPE / "local"  # holds the synth_corpus package

if str(LOCAL) not in sys.path:
    sys.path.insert(0, str(LOCAL))


def hydra_args(data_dir: Path, *extra: str) -> list[str]:
    return [f"recipe_dir={RECIPE}", f"data_dir={data_dir}", f"exp_dir={data_dir / 'exp'}",
            "num_workers=2", f"hydra.searchpath=[file://{RECIPE}/conf]", "corpus=tiny", *extra]


def build_tiny(data_dir: Path, *extra: str) -> None:
    """Stage 0 (synthesis) on the tiny size, then stage 1 (manifests), in subprocesses."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(LOCAL), env.get("PYTHONPATH")) if p)
    for module in ("synth_corpus.prepare", "unique_asr.bin.manifests"):
        r = subprocess.run([sys.executable, "-m", module, *hydra_args(data_dir, *extra)],
                           capture_output=True, text=True, cwd=ROOT, env=env, check=False)
        assert r.returncode == 0, f"{module} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


@pytest.fixture(scope="session")
def tiny_builder():
    """The build_tiny function (fixtures are how pytest shares helpers without packages)."""
    return build_tiny
