#!/usr/bin/env bash
# Transcribe your own audio with a trained model (python -m unique_asr.bin.transcribe).
# Usage: local/transcribe.sh MODEL INPUT... [--skip-bad] [key=value hydra overrides]
#   MODEL  an exported model (run.sh stage 7, python -m unique_asr.bin.export) or a training run's
#          directory (exp/<tag>: its newest checkpoint is exported to exp/<tag>/export first)
#   INPUT  audio files (wav/flac/ogg/mp3, any rate and channels), globs, directories, wav.scp-style
#          lists, lhotse recordings or cuts manifests
# e.g. local/transcribe.sh egs/synth_longform/exp/tiny ~/talks/*.flac transcribe.out_dir=out \
#        transcribe.refs=refs.txt decode.method=ctc_beam decode.beam=32
# Paths are taken from the current directory.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ $# -lt 2 ]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
model=$1; shift
py=$root/.venv/bin/python
[ -x "$py" ] || { echo "$py not found: run $root/local/setup_env.sh" >&2; exit 1; }
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$py" -m unique_asr.bin.transcribe \
  "transcribe.model=$model" "$@"
