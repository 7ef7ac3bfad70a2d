"""Where the shared hydra configs live (conf/ at the repository root)."""

from pathlib import Path

CONFIG_PATH = str(Path(__file__).resolve().parents[2] / "conf")
