#!/usr/bin/env bash
# Download the Python wheels the GPU host lacks into .gpu/wheels (git-ignored; carried there and
# installed by build_corpus.sh / train_large.sh into /tmp/site). Run on the dev box.
#
#   tools/gpu/fetch_wheels.sh [DIR]      (default .gpu/wheels; ~12 MB)
#
# The host's image (Python 3.12, torch 2.11) already holds torch, torchaudio, numpy,
# sentencepiece, tokenizers, safetensors, tensorboard, sortedcontainers, click, tqdm, pyyaml
# (the device tool's KINDS.md lists them); below is what the recipe needs beyond that:
# lhotse and its own needs, hydra, jiwer, soundfile, and gguf for the SmolLM2 loader.
# antlr4-python3-runtime 4.9.3 (omegaconf's) has no wheel on PyPI: it is built here.
set -euo pipefail
dir=${1:-.gpu/wheels}
mkdir -p "$dir"
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64
      --platform any)
py=${PYTHON:-python3}
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${plat[@]}" -d "$dir" \
  lhotse==1.33.0 lilcom cytoolz intervaltree audioread soundfile==0.14.0 cffi pycparser \
  hydra-core==1.3.2 omegaconf==2.3.1 jiwer==4.0.0 rapidfuzz gguf==0.19.0
ls "$dir"/antlr4_python3_runtime-4.9.3-*.whl >/dev/null 2>&1 ||
  "$py" -m pip wheel -q --no-deps -w "$dir" antlr4-python3-runtime==4.9.3
du -sh "$dir"; ls "$dir"
