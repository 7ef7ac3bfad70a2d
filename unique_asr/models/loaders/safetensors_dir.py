"""All tensors of a Hugging Face checkpoint directory: one `model.safetensors`, or shards listed
in `model.safetensors.index.json`."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def require_file(path: Path, what: str) -> Path:
    """`path` if it exists, else FileNotFoundError naming the file and what it is for."""
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} not found in {path.parent} (needed: {what})")
    return path


def safetensors_files(directory: str | Path) -> list[Path]:
    """The weight files of `directory`: the shards of the index if there is one, else
    model.safetensors."""
    from safetensors import safe_open  # noqa: F401  (fail early with the package name)

    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {d}")
    index = d / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [require_file(d / s, f"shard listed in {index.name}") for s in shards]
    return [require_file(d / "model.safetensors", "the weights (or model.safetensors.index.json "
                         "for a sharded checkpoint)")]


def read_safetensors_dir(directory: str | Path) -> dict[str, torch.Tensor]:
    """name -> tensor over all weight files of `directory`, on the CPU, in the stored dtype."""
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in safetensors_files(directory):
        out.update(load_file(str(f), device="cpu"))
    return out
