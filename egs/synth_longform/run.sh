#!/usr/bin/env bash
# egs/synth_longform: the default recipe. Synthetic long-form English conversations made
# offline with espeak-ng, flite and festival (see README.md). Options given here are the
# corpus's; anything on the command line (--corpus-size tiny, --stage 2, -- overrides) wins.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "$here/../../run.sh" --recipe "$here" --corpus-size default --nj 2 "$@"
