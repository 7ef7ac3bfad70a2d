#!/usr/bin/env bash
# Stage 0 of egs/synth_longform: synthesise the conversational corpus into <data_dir>/corpus.
# Called by the top run.sh with its hydra arguments; resumable (per-utterance cache,
# per-conversation outputs written under temp names and renamed). The synthesis code is this
# recipe's own package, local/synth_corpus (python -m synth_corpus.prepare).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$root/.venv/bin/python" -m synth_corpus.prepare "$@"
