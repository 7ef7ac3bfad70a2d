#!/usr/bin/env bash
# unique_asr: the shared stage-by-stage pipeline (Kaldi/ESPnet style).
# With no arguments it sets up the environment and runs every stage of the default recipe,
# egs/synth_longform. Recipes call it from egs/<corpus>/run.sh with their own options.
#
# A stage is a shell function named stage_<N>_<name>; the driver finds them by name, so adding
# a stage means adding one function (and, optionally, stage_keys_<N>: the hydra override keys
# that make its finished work stale). Each stage logs start/end/duration, writes a .done marker
# on success (a re-run skips it) and stops the pipeline with its name on failure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$root"

# ---- options (any of them as --name value; see --help)
stage=0              # first stage to run
stop_stage=""        # last stage to run (default: the last stage that exists)
recipe=egs/synth_longform
corpus_size=default  # recipes with conf/corpus/: tiny | default | large
nj=2                 # parallel workers (synthesis, fbank)
data_dir=""          # default: <recipe>/data
exp_dir=""           # default: <recipe>/exp
force=false          # true: ignore .done markers in the selected range
setup=true           # false: skip local/setup_env.sh (the environment is known to be ready)
decode_also="decode.method=ctc_beam decode.beam=32"
                     # hydra overrides of a second decoding, decoded (stage 5) and scored (stage 6)
                     # beside the main one (default: the CTC head with the n-gram LM); "" = none

help_message="Usage: $0 [options] [-- hydra overrides]
  --stage N          first stage (default 0)
  --stop-stage M     last stage (default: the last one)
  --recipe DIR       recipe directory (default egs/synth_longform)
  --corpus-size S    corpus config for recipes that synthesise one: tiny|default|large|distinct
  --nj N             parallel workers (default 2)
  --data-dir DIR     data outputs (default <recipe>/data)
  --exp-dir DIR      experiment outputs (default <recipe>/exp)
  --force BOOL       redo stages even when their .done marker exists (default false)
  --setup BOOL       run local/setup_env.sh first (default true)
  --decode-also \"K=V ...\"  hydra overrides of a second decoding that stages 5 and 6 decode and
                     score beside the main one (default \"decode.method=ctc_beam decode.beam=32\":
                     the CTC head with the n-gram LM of stage 3's lm_text.txt; \"\" = none)
Everything after -- goes to every Python stage as hydra overrides, e.g.
  $0 --stage 3 -- data.lang.vocab_size=256
Stages:"

# ---- stages: stage_<N>_<name> functions. $py, "${hydra_args[@]}" and the paths are set below.
stage_keys_0="corpus seed"
stage_0_prepare() {   # corpus -> <data_dir>/corpus (recipe-specific: <recipe>/local/)
  local script="$recipe/local/prepare_corpus.sh"
  [ -x "$script" ] || die "stage 0: $script not found or not executable (each recipe provides it)"
  "$script" "${hydra_args[@]}"
}
stage_keys_1="corpus seed data.splits"
stage_1_manifests() { "$py" -m unique_asr.bin.manifests "${hydra_args[@]}"; }
stage_keys_2="corpus seed data.splits data.fbank data.sample_rate model.encoder"
stage_2_features() { "$py" -m unique_asr.bin.features "${hydra_args[@]}"; }
stage_keys_3="corpus seed data.lang"
stage_3_bpe() { "$py" -m unique_asr.bin.bpe "${hydra_args[@]}"; }
stage_keys_4="corpus seed data model train"
stage_4_train() { "$py" -m unique_asr.bin.train "${hydra_args[@]}"; }    # exp/<train.tag>/
stage_keys_5="corpus seed data model train decode"
stage_5_decode() {    # whole recordings; then the --decode-also setting, if any
  "$py" -m unique_asr.bin.decode "${hydra_args[@]}"
  [ -z "$decode_also" ] || "$py" -m unique_asr.bin.decode "${hydra_args[@]}" $decode_also
}
stage_keys_6="corpus seed data model train decode"
stage_6_score() {     # WER files and a RESULTS.md row per decoding
  "$py" -m unique_asr.bin.score "${hydra_args[@]}"
  [ -z "$decode_also" ] || "$py" -m unique_asr.bin.score "${hydra_args[@]}" $decode_also
}
stage_keys_7="corpus seed data model train decode transcribe.model"
stage_7_export() {    # <decode.model_dir>/export: the model without data/ (bin.transcribe reads it)
  "$py" -m unique_asr.bin.export "${hydra_args[@]}"
}

# ---- driver
log() { echo "[run.sh $(date -u +%H:%M:%S)] $*"; }
die() { echo "[run.sh] ERROR: $*" >&2; exit 1; }

mapfile -t stage_fns < <(declare -F | awk '{print $3}' | grep -E '^stage_[0-9]+_' | sort -t_ -k2,2n)
stage_list=""
for fn in "${stage_fns[@]}"; do
  n=${fn#stage_}; n=${n%%_*}
  help_message+=$'\n'"  $n ${fn#stage_${n}_}"
  stage_list+=" $n"
done

. local/parse_options.sh
overrides=("$@")

usage_error() { echo "$0: $*" >&2; printf '%s\n' "$help_message" >&2; exit 2; }
is_stage() { [[ "$1" =~ ^[0-9]+$ ]] && [[ " $stage_list " == *" $1 "* ]]; }
last_stage=${stage_list##* }
[ -n "$stop_stage" ] || stop_stage=$last_stage
is_stage "$stage" || usage_error "unknown stage '$stage' (stages:$stage_list)"
is_stage "$stop_stage" || usage_error "unknown stop stage '$stop_stage' (stages:$stage_list)"
[ "$stage" -le "$stop_stage" ] || usage_error "--stage $stage is after --stop-stage $stop_stage"
[[ "$nj" =~ ^[1-9][0-9]*$ ]] || usage_error "--nj must be a positive integer, not '$nj'"

[ -d "$recipe" ] || die "recipe directory '$recipe' does not exist (see egs/ for recipes)"
recipe=$(cd "$recipe" && pwd)
if [ -d "$recipe/conf/corpus" ] && [ ! -f "$recipe/conf/corpus/$corpus_size.yaml" ]; then
  usage_error "unknown --corpus-size '$corpus_size' (have: $(cd "$recipe/conf/corpus" &&
    ls -- *.yaml | sed 's/\.yaml$//' | tr '\n' ' '))"
fi
data_dir=${data_dir:-$recipe/data}
exp_dir=${exp_dir:-$recipe/exp}
mkdir -p "$data_dir" "$exp_dir"
data_dir=$(cd "$data_dir" && pwd)
exp_dir=$(cd "$exp_dir" && pwd)

if $setup; then local/setup_env.sh; fi
py=$root/.venv/bin/python
[ -x "$py" ] || die "$py not found: run local/setup_env.sh (or drop --setup false)"
export PYTHONUNBUFFERED=1

hydra_args=("recipe_dir=$recipe" "data_dir=$data_dir" "exp_dir=$exp_dir" "num_workers=$nj"
            "hydra.searchpath=[file://$recipe/conf]")
[ -d "$recipe/conf/corpus" ] && hydra_args+=("corpus=$corpus_size")
hydra_args+=("${overrides[@]+"${overrides[@]}"}")

# The marker of a stage holds a signature of the options that shape its output; a different
# signature (e.g. another --corpus-size or data.lang.vocab_size) makes the stage run again.
signature() {
  local n=$1 keys_var="stage_keys_$1" keys sig="recipe=$recipe corpus_size=$corpus_size" o k p
  keys=${!keys_var-}
  for o in "${overrides[@]+"${overrides[@]}"}"; do
    k=${o%%=*}; k=${k#++}; k=${k#+}; k=${k#\~}
    if [ -z "$keys" ]; then sig+=" $o"; continue; fi
    for p in $keys; do
      # a key of the stage, one below it, or a group above it (model=tiny changes model.encoder)
      if [ "$k" = "$p" ] || [[ "$k" == "$p".* ]] || [[ "$p" == "$k".* ]]; then
        sig+=" $o"; break
      fi
    done
  done
  if [ "$n" -ge 5 ] && [ -n "$decode_also" ]; then sig+=" decode_also=$decode_also"; fi
  echo "$sig"
}
marker_dir() { if [ "$1" -le 3 ]; then echo "$data_dir/.done"; else echo "$exp_dir/.done"; fi; }

log "recipe $recipe, stages $stage..$stop_stage, data $data_dir, exp $exp_dir"
[ ${#overrides[@]} -eq 0 ] || log "hydra overrides: ${overrides[*]}"
t_all=$SECONDS
for fn in "${stage_fns[@]}"; do
  n=${fn#stage_}; n=${n%%_*}; name=${fn#stage_${n}_}
  [ "$n" -ge "$stage" ] && [ "$n" -le "$stop_stage" ] || continue
  marker="$(marker_dir "$n")/stage${n}_${name}.done"
  sig=$(signature "$n")
  if ! $force && [ -f "$marker" ]; then
    if [ "$(head -n1 "$marker")" = "$sig" ]; then
      log "stage $n ($name): done already, skipping (remove $marker or use --force true to redo)"
      continue
    fi
    log "stage $n ($name): options changed since it was done; running it again"
  fi
  rm -f "$marker"
  log "stage $n ($name): start"
  t0=$SECONDS
  set +e
  ( set -e; "$fn" )
  rc=$?
  set -e
  if [ $rc -ne 0 ]; then
    echo "[run.sh $(date -u +%H:%M:%S)] ERROR: stage $n ($name) FAILED (exit $rc) after" \
         "$((SECONDS - t0)) s; fix the error above and re-run with --stage $n" >&2
    exit $rc
  fi
  mkdir -p "$(dirname "$marker")"
  printf '%s\n%s\n' "$sig" "finished $(date -u +%FT%TZ) in $((SECONDS - t0)) s" > "$marker.tmp"
  mv "$marker.tmp" "$marker"
  log "stage $n ($name): done in $((SECONDS - t0)) s"
done
log "all requested stages done in $((SECONDS - t_all)) s"
