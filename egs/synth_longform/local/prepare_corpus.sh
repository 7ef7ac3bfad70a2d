#!/usr/bin/env bash
# Stage 0 of egs/synth_longform: synthesise the conversational corpus into <data_dir>/corpus.
# Called by the top run.sh with its hydra arguments; resumable (per-utterance cache,
# per-conversation outputs written under temp names and renamed).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
exec "$root/.venv/bin/python" -m unique_asr.bin.prepare "$@"
