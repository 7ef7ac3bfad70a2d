#!/usr/bin/env bash
# Build the synth_longform corpus (stages 0-3: prepare, manifests, features, bpe) on the GPU
# machine, where there is no venv, no apt and no TTS engine: the audio and features are far too
# big to carry (64 MiB), so they are made there. Needs `.gpu` carried (wheels + TTS debs).
#
#   tools/gpu/build_corpus.sh --size large --nj 16 [-- hydra overrides]
#
# What it does, in order:
#   1. pip-installs .gpu/wheels into $site (lhotse, hydra, soundfile, ...; tools/gpu/fetch_wheels.sh)
#      and puts it and the repo on PYTHONPATH, unless $site already holds lhotse;
#   2. unpacks the TTS bundle (.gpu/tts) into $tts with tools/gpu/unpack_tts.sh (wrappers on
#      PATH; nothing is written under /usr);
#   3. runs stages 0-3 as run.sh would (same hydra arguments: recipe_dir, data_dir, exp_dir,
#      num_workers, hydra.searchpath, corpus=<size>), with $python instead of the venv and the
#      bundle's fortune files as corpus.text.fortune_dir (fortunes-min and, for large's extra
#      train/dev text, fortunes: one directory), printing wall/CPU time per stage.
# A size other than default starts from the default corpus's synthesis cache when there is one
# (hard links; the cache is keyed by voice and text, so it is shared safely), and at the end its
# test split is compared with the default one (large: they must be identical).
# Resumable like run.sh's stage 0: run it again after an interruption.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

size=default         # corpus size: tiny | default | large
nj=16                # parallel workers (synthesis, mixing, fbank)
stage=0
stop_stage=3
recipe=egs/synth_longform
data_dir=""          # default: <recipe>/data for default, <recipe>/data/<size> otherwise
exp_dir=""           # default: <recipe>/exp
python=python3       # the interpreter that holds torch (no venv on the GPU machine)
site=/tmp/site       # where the wheels are installed
wheels=.gpu/wheels
tts_debs=.gpu/tts
tts=/tmp/tts         # TTS prefix
help_message="Usage: $0 [--size default|large|tiny] [--nj 16] [--stage 0] [--stop-stage 3]
  [--data-dir DIR] [--exp-dir DIR] [--python python3] [--site /tmp/site] [--tts /tmp/tts]
  [-- hydra overrides]"
. local/parse_options.sh
overrides=("$@")

log() { echo "[build_corpus $(date -u +%H:%M:%S)] $*"; }
die() { echo "[build_corpus] ERROR: $*" >&2; exit 1; }
[ "$stage" -ge 0 ] && [ "$stop_stage" -le 3 ] && [ "$stage" -le "$stop_stage" ] ||
  die "stages must satisfy 0 <= --stage <= --stop-stage <= 3 (stage 4+ is training: use run.sh)"
recipe=$(cd "$recipe" && pwd)
[ -f "$recipe/conf/corpus/$size.yaml" ] || die "no corpus size '$size' ($recipe/conf/corpus/)"
if [ -z "$data_dir" ]; then
  if [ "$size" = default ]; then data_dir=$recipe/data; else data_dir=$recipe/data/$size; fi
fi
exp_dir=${exp_dir:-$recipe/exp}
mkdir -p "$data_dir" "$exp_dir"
data_dir=$(cd "$data_dir" && pwd)
exp_dir=$(cd "$exp_dir" && pwd)

t_all=$SECONDS
# ---- 1. python packages
if ! PYTHONPATH=$site "$python" -c "import lhotse, hydra, soundfile, jiwer" 2>/dev/null; then
  ls "$wheels"/*.whl >/dev/null 2>&1 || die "no wheels in $wheels: carry .gpu (tools/gpu/fetch_wheels.sh)"
  log "installing $(ls "$wheels"/*.whl | wc -l) wheels into $site"
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
    "$wheels"/*.whl || die "pip install of $wheels failed"
fi
export PYTHONPATH=$site:$root:$root/egs/synth_longform/local${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
# ---- 2. TTS engines
env_file=$tts/env.sh
debs_list=$(cd "$tts_debs" 2>/dev/null && ls -- *.deb 2>/dev/null | sort || true)
# unpack again when the bundle gained packages since (e.g. fortunes for the large text)
if [ ! -f "$env_file" ] || [ "$(cat "$tts/debs.txt" 2>/dev/null)" != "$debs_list" ]; then
  log "unpacking the TTS bundle $tts_debs into $tts"
  mkdir -p "$tts"
  tools/gpu/unpack_tts.sh "$tts_debs" "$tts" > "$env_file.tmp" && mv "$env_file.tmp" "$env_file"
  echo "$debs_list" > "$tts/debs.txt"
fi
# shellcheck disable=SC1090
. "$env_file"
if [ "$size" = large ] && [ ! -f "$UNIQUE_ASR_FORTUNE_DIR/cookie" ]; then
  die "the large corpus's train/dev text (Debian's fortunes package) is not in \
$UNIQUE_ASR_FORTUNE_DIR: run tools/gpu/fetch_tts_debs.sh on the dev box (it adds \
fortunes_*.deb to $tts_debs) and carry .gpu"
fi
log "setup done in $((SECONDS - t_all)) s; espeak-ng: $(command -v espeak-ng)"

# ---- 3. stages 0-3, the way run.sh calls them
hydra_args=("recipe_dir=$recipe" "data_dir=$data_dir" "exp_dir=$exp_dir" "num_workers=$nj"
            "hydra.searchpath=[file://$recipe/conf]" "corpus=$size"
            "corpus.text.fortune_dir=$UNIQUE_ASR_FORTUNE_DIR")
hydra_args+=("${overrides[@]+"${overrides[@]}"}")
default_cache=$recipe/data/corpus/cache
if [ "$stage" -eq 0 ] && [ "$data_dir" != "$recipe/data" ] && [ -d "$default_cache" ] &&
   [ ! -d "$data_dir/corpus/cache" ]; then
  log "starting from the default corpus's synthesis cache ($default_cache, hard links)"
  mkdir -p "$data_dir/corpus"
  cp -al "$default_cache" "$data_dir/corpus/cache.tmp" 2>/dev/null &&
    mv "$data_dir/corpus/cache.tmp" "$data_dir/corpus/cache" ||
    { rm -rf "$data_dir/corpus/cache.tmp"; log "(no hard links across file systems: not reused)"; }
fi
log "size $size, nj $nj, data $data_dir, exp $exp_dir"
log "hydra arguments (reuse them for training): ${hydra_args[*]}"
names=(prepare manifests features bpe)
# stage 0 is the recipe's own package (local/synth_corpus), stages 1-3 the shared entry points
modules=(synth_corpus.prepare unique_asr.bin.manifests unique_asr.bin.features unique_asr.bin.bpe)
table=""
for n in $(seq "$stage" "$stop_stage"); do
  name=${names[$n]}
  log "stage $n ($name): start"
  t0=$(date +%s.%N)
  c0=$(awk '{print $14+$15+$16+$17}' /proc/$$/stat)
  "$python" -m "${modules[$n]}" "${hydra_args[@]}" ||
    die "stage $n ($name) failed; fix the error above and re-run with --stage $n"
  wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  tck=$(getconf CLK_TCK)
  cpu=$(awk -v a="$c0" -v b="$(awk '{print $14+$15+$16+$17}' /proc/$$/stat)" -v t="$tck" \
    'BEGIN{printf "%.1f", (b-a)/t}')
  log "stage $n ($name): done in $wall s wall, $cpu s CPU"
  table+=$(printf '\n| %d %-9s | %8s s | %8s s |' "$n" "$name" "$wall" "$cpu")
done

# ---- summary
info=$data_dir/corpus/info.json
if [ -f "$info" ]; then
  "$python" - "$info" <<'EOF'
import json, sys
info = json.load(open(sys.argv[1]))
for s, d in info["splits"].items():
    print(f"  {s:5s}: {d['recordings']:4d} recordings, {d['hours']:7.3f} h, {d['segments']} sentences")
EOF
fi
if [ "$size" = large ] && [ -f "$recipe/data/corpus/test/segments.jsonl" ] &&
   [ -f "$data_dir/corpus/test/segments.jsonl" ]; then
  sums() { (cd "$1/corpus/test" && sha256sum segments.jsonl audio/*.flac); }
  if [ "$(sums "$recipe/data")" = "$(sums "$data_dir")" ]; then
    log "test split: identical to the default corpus's ($(sums "$data_dir" | wc -l) files, sha256)"
  else
    log "WARNING: test split differs from the default corpus's ($recipe/data/corpus/test)"
  fi
fi
echo "| stage       |     wall   |  CPU (children) |$table"
log "all done in $((SECONDS - t_all)) s (setup included)"
