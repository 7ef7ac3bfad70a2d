#!/usr/bin/env bash
# egs/earnings21: Earnings-21 from a local copy, test only: whole calls decoded with a model
# trained elsewhere (decode.model_dir; default: egs/synth_longform's run of the same model).
# Point it at the corpus with `-- corpus.path=/path/to/earnings21`. There is no training data,
# so without --stage/--stop-stage it runs stages 0-2 (data) and 5-6 (decode, score), skipping
# 3-4 (BPE, training). Anything on the command line wins over the options given here.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
run=("$here/../../run.sh" --recipe "$here" --corpus-size default --nj 2)
for a in "$@"; do
  [ "$a" = "--" ] && break
  if [ "$a" = "--stage" ] || [ "$a" = "--stop-stage" ]; then exec "${run[@]}" "$@"; fi
done
"${run[@]}" --stop-stage 2 "$@"
exec "${run[@]}" --stage 5 "$@"
