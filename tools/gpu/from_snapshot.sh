#!/usr/bin/env bash
# Run a GPU script from a committed snapshot instead of the shipped working tree, so that
# uncommitted edits in the checkout (other work in progress) never reach a device call, and so
# that files written by earlier calls on the same warm machine (corpus, checkpoints under
# /tmp/src/egs/*/data and exp) are found again by later calls.
#   dev box:  git archive --format=tar.gz -o .gpu/src.tgz HEAD     (then carry [".gpu"])
#   device:   bash tools/gpu/from_snapshot.sh tools/gpu/train_large.sh --train-minutes 9 ...
set -euo pipefail
here=$(pwd)
src=${SNAPSHOT_DIR:-/tmp/src}
[ -f .gpu/src.tgz ] || { echo "from_snapshot.sh: .gpu/src.tgz missing (git archive ... HEAD)" >&2; exit 1; }
mkdir -p "$src"
tar -xzf .gpu/src.tgz -C "$src"   # tracked files only: data/ and exp/ of earlier calls stay
ln -sfn "$here/.gpu" "$src/.gpu"
cd "$src"
echo "[from_snapshot] $(tar -tzf "$here/.gpu/src.tgz" | wc -l) files from .gpu/src.tgz in $src; running $*"
exec bash "$@"
