#!/usr/bin/env bash
# egs/librispeech_longform: LibriSpeech from a local copy, with long-form dev/test recordings
# (one per chapter, its utterances joined in order; README.md). Point it at the corpus with
# `-- corpus.path=/path/to/LibriSpeech`; --corpus-size quick (train-clean-100) or full (960 h).
# Anything on the command line wins over the options given here.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "$here/../../run.sh" --recipe "$here" --corpus-size quick --nj 2 "$@"
