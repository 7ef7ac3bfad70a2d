#!/usr/bin/env bash
# Stage 0 of egs/tedlium3: a local TED-LIUM 3 copy (corpus.path) -> <data_dir>/corpus
# (local/tedlium_prep.py). Called by the top run.sh with its hydra arguments.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$here/../../../.venv/bin/python" -m tedlium_prep "$@"
