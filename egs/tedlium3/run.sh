#!/usr/bin/env bash
# egs/tedlium3: TED-LIUM 3 from a local copy: training on the segmented talks, whole
# dev/test talks scored per talk (README.md). Point it at the corpus with
# `-- corpus.path=/path/to/TEDLIUM_release-3`.
# Anything on the command line wins over the options given here.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "$here/../../run.sh" --recipe "$here" --corpus-size default --nj 2 "$@"
