"""Training checkpoints: atomic writes, keep-last-k, averaging of the last N, RNG state."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

CKPT_RE = re.compile(r"checkpoint-(\d+)\.pt$")


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temp file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    tmp = path.with_name(f".tmp.{path.name}.{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def rng_state() -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(),
          "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def list_checkpoints(exp_dir: Path) -> list[tuple[int, Path]]:
    out = []
    for p in Path(exp_dir).glob("checkpoint-*.pt"):
        m = CKPT_RE.search(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def save_training_checkpoint(exp_dir: Path, state: dict, keep_last: int) -> Path:
    """Write checkpoint-<step>.pt and last.pt atomically; delete all but the newest keep_last."""
    exp_dir = Path(exp_dir)
    path = exp_dir / f"checkpoint-{state['step']}.pt"
    atomic_save(state, path)
    atomic_save(state, exp_dir / "last.pt")
    if keep_last > 0:
        for _, p in list_checkpoints(exp_dir)[:-keep_last]:
            p.unlink(missing_ok=True)
    return path


def average_checkpoints(paths: list[Path], out: Path) -> Path:
    """Average the float tensors of several checkpoints' models (others from the newest)."""
    if not paths:
        raise ValueError("no checkpoints to average")
    avg, n = None, len(paths)
    last = None
    for p in paths:
        ck = torch.load(p, map_location="cpu", weights_only=False)
        sd = ck["model"]
        if avg is None:
            avg = {k: v.double() if v.is_floating_point() else v.clone() for k, v in sd.items()}
        else:
            for k, v in sd.items():
                if v.is_floating_point():
                    avg[k] += v.double()
        last = ck
    model = {k: (v / n).to(last["model"][k].dtype) if v.is_floating_point() else last["model"][k]
             for k, v in avg.items()}
    atomic_save({"model": model, "model_cfg": last["model_cfg"], "bpe_model": last.get("bpe_model"),
                 "step": last["step"], "averaged": [str(p.name) for p in paths]}, out)
    return out
