#!/usr/bin/env bash
# Issue 3 on the GPU machine, in ONE device call (the machine keeps nothing between calls):
# build the `large` corpus (tools/gpu/build_corpus.sh), train the `small` model from scratch with
# one configuration per GPU in parallel (each alone on its GPU, for a wall-clock budget that fits
# the call), decode the default test split (large's test split is the default one) as whole
# recordings with each, score, and pack logs, loss curves and scoring files into $OUT.
#
#   tools/gpu/train_large.sh --deadline-s 570 \
#       --config "main=train.lr=1e-3" --config "alt=train.lr=2e-3 train.max_duration=1200"
#
# Device call: kind nvidia-h200-x2 (one config per GPU), carry [".gpu"], timeout_s 600.
# Training minutes = what is left of --deadline-s after the build, minus --reserve-s for the
# checkpoint averaging, decoding and scoring. Every config shares --common overrides (below).
# Over several calls on a machine kept warm (it keeps files between calls for ~30 s):
#   call 1: --train-minutes 9 --halt-at-s 560 --no-decode   (build, then train until the call
#           ends: a checkpoint is written, the cosine schedule is that of the full 9 minutes)
#   call 2: --train-minutes 9 --resume                     (finish the 9 minutes, decode, score)
#   --extra-decode "OVERRIDES": after the default decode, decode + score again with these (e.g.
#   "decode.method=ctc_greedy"; its scoring files get their own tag).
#   --skip-decode-tag TAG (repeatable): that config trains but is not decoded here (e.g. a
#   second config whose checkpoint comes back with --keep and is decoded elsewhere).
#   --decode-only: decode + score the configs' models again. The build is skipped when its
#   outputs exist.
#   --per-gpu N: up to N configs share one GPU (small models such as tiny leave a GPU idle);
#   --workers W: data-loader workers per config (default 8; lower it when many configs share);
#   --keep-models: copy each config's averaged checkpoint to $OUT/<tag>.pt (files come back
#   from a call only up to 16 MiB each and ~64 MiB in all: a larger one comes as 15-MiB
#   $OUT/<tag>.pt.part-NN, joined with cat) to decode them elsewhere; --keep TAG
#   (repeatable): only those configs' checkpoints; --keep-bf16: their float weights in bfloat16
#   (half the bytes, so two configs' checkpoints fit what one call returns).
#   --per-speaker SPLIT (repeatable): after decoding, the CTC head's CER/WER per speaker of that
#   split (bench/ctc_per_speaker.py) into $OUT/perspk_<split>_<tag>.tsv.
#   --skip-build: the corpus and the features the configs read were made by earlier calls (the
#   pretrained speech LLM reads Whisper outputs that build_corpus.sh's stage 2 makes with the
#   model's overrides: tools/README.md, "Pretrained speech LLM on the GPU").
# Sweep of the CPU recipe's tiny model on the default corpus, 8 configs on one GPU:
#   --size default --per-gpu 8 --workers 1 --common "model=tiny train.max_minutes=0 ..." 
set -uo pipefail
SECONDS=${CALL_ELAPSED_S:-0}  # seconds of the device call spent before this script (slm_gpu.sh)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

deadline_s=570       # the whole script must end by then (the call's limit is 600 s)
reserve_s=180        # kept for averaging + decoding + scoring after training (a looping char
                     # decoder runs to the 30 tokens/s cap: thousands of steps)
nj=$(nproc)
size=large
lang=char            # data.lang.model_type
out=${OUT:-$root/exp_gpu_out}
recipe=$root/egs/synth_longform
# the best measured `small` configuration (RESULTS.md): fp32 (faster than bf16 autocast for
# `small`); CTC alone for the first 1500 steps
common="model=small train=gpu train.bf16=false train.max_duration=150 train.lr=2e-3 \
train.warmup_steps=200 model.dropout=0.0 model.encoder.zero_init=true train.curriculum.start_max_s=5 \
train.curriculum.ramp_epochs=8 train.max_steps=6000 train.ctc_warmup_steps=1500 \
train.save_every=250 train.valid_every=250 train.average_last=3 train.valid_wer_recordings=0"
configs=()
train_minutes=""     # fixed training budget (minutes, the schedule's); default: fit the call
halt_at_s=""         # stop training at this second of the call (checkpoint kept; --resume later)
resume=false
decode=true
train=true
build_only=false
skip_build=false
extra_decode=""
per_gpu=1
workers=8
keep_models=false
keep_tags=()
skip_decode_tags=()
keep_bf16=false
perspk_splits=()
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --deadline-s) deadline_s=$2; shift 2 ;;
    --reserve-s) reserve_s=$2; shift 2 ;;
    --nj) nj=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --lang) lang=$2; shift 2 ;;
    --common) common=$2; shift 2 ;;
    --config) configs+=("$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    --train-minutes) train_minutes=$2; shift 2 ;;
    --halt-at-s) halt_at_s=$2; shift 2 ;;
    --resume) resume=true; shift ;;
    --no-decode) decode=false; shift ;;
    --decode-only) train=false; shift ;;
    --build-only) build_only=true; shift ;;
    --skip-build) skip_build=true; shift ;;
    --extra-decode) extra_decode=$2; shift 2 ;;
    --per-gpu) per_gpu=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --keep-models) keep_models=true; shift ;;
    --keep) keep_models=true; keep_tags+=("$2"); shift 2 ;;
    --skip-decode-tag) skip_decode_tags+=("$2"); shift 2 ;;
    --keep-bf16) keep_bf16=true; shift ;;
    --per-speaker) perspk_splits+=("$2"); shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "train_large.sh: unknown option '$1'" >&2; usage 2 ;;
  esac
done
[ ${#configs[@]} -gt 0 ] || configs=("main=")
log() { echo "[train_large $(date -u +%H:%M:%S) +$SECONDS s] $*"; }
mkdir -p "$out"
data=$recipe/data/$size
exp=$recipe/exp
ngpu=$(nvidia-smi -L 2>/dev/null | wc -l)
[ "$ngpu" -ge 1 ] || { echo "train_large.sh: no GPU" >&2; exit 1; }
[ ${#configs[@]} -le $((ngpu * per_gpu)) ] ||
  { echo "train_large.sh: ${#configs[@]} configs > $ngpu GPUs x --per-gpu $per_gpu" >&2; exit 1; }

if $skip_build || { [ -f "$data/fbank/cuts_train.jsonl.gz" ] && [ -d "$data/lang_$lang" ]; }; then
  log "corpus $size already built here ($data): build skipped"
  PYTHONPATH=/tmp/site python3 -c "import lhotse, hydra, jiwer" 2>/dev/null ||
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
      .gpu/wheels/*.whl
else
  log "build corpus $size ($nj jobs, data.lang.model_type=$lang)"
  tools/gpu/build_corpus.sh --size "$size" --nj "$nj" --data-dir "$data" -- "data.lang.model_type=$lang" \
    > "$out/build.log" 2>&1 || { tail -n 40 "$out/build.log"; exit 1; }
  grep -E "^\[build_corpus|^\||^  (train|dev|test)" "$out/build.log" | grep -v "it/s"
fi
$build_only && { log "build only: done"; exit 0; }
export PYTHONPATH=/tmp/site:$root PYTHONUNBUFFERED=1

hydra=("recipe_dir=$recipe" "data_dir=$data" "exp_dir=$exp" "hydra.searchpath=[file://$recipe/conf]"
       "corpus=$size" "data.lang.model_type=$lang" "num_workers=$workers")
read -r -a common_args <<< "$common"
train_min=${train_minutes:-$(awk -v l=$((deadline_s - SECONDS - reserve_s)) 'BEGIN{printf "%.2f", l/60}')}
run_args=("train.max_minutes=$train_min")
$resume && run_args+=("train.resume=true")
if [ -n "$halt_at_s" ]; then
  run_args+=("train.halt_after_minutes=$(awk -v l=$((halt_at_s - SECONDS)) 'BEGIN{printf "%.2f", l/60}')")
fi
$train && log "training ${#configs[@]} config(s) in parallel, schedule $train_min min each: ${run_args[*]}"
i=0
for c in "${configs[@]}"; do
  gpu=$((i / per_gpu)); i=$((i + 1))
  tag=${c%%=*}; read -r -a extra <<< "${c#*=}"
  (
    export CUDA_VISIBLE_DEVICES=$gpu
    a=("${hydra[@]}" "${common_args[@]}" "${extra[@]+"${extra[@]}"}" "train.tag=$tag")
    if $train; then
      python3 -m unique_asr.bin.train "${a[@]}" "${run_args[@]}" \
        >> "$out/train_$tag.log" 2>&1 || { echo "train $tag FAILED"; tail -n 30 "$out/train_$tag.log"; exit 1; }
      if [ -f "$exp/$tag/train_summary.json" ]; then
        echo "[$tag] trained: $(tr -d '\n ' < "$exp/$tag/train_summary.json")"
      else
        echo "[$tag] halted at step $(tail -n 1 "$exp/$tag/train_log.jsonl" | cut -c1-60) (resume later)"
      fi
    fi
    $decode || exit 0
    [[ " ${skip_decode_tags[*]-} " == *" $tag "* ]] && exit 0
    d=("decode.results_md=$exp/$tag/RESULTS.md" "decode.dtype=bfloat16")
    decode_score() {  # log-name suffix, then extra decode overrides
      local sfx=$1; shift
      python3 -m unique_asr.bin.decode "${a[@]}" "${d[@]}" "$@" > "$out/decode${sfx}_$tag.log" 2>&1 &&
        python3 -m unique_asr.bin.score "${a[@]}" "${d[@]}" "$@" > "$out/score${sfx}_$tag.log" 2>&1 ||
        { echo "decode/score$sfx $tag FAILED"; tail -n 30 "$out/decode${sfx}_$tag.log" "$out/score${sfx}_$tag.log"; exit 1; }
      echo "[$tag]${*:+ ($*)} $(grep -E 'WER' "$out/score${sfx}_$tag.log" | tail -n 3)"
    }
    decode_score ""
    if [ -n "$extra_decode" ]; then
      read -r -a xd <<< "$extra_decode"
      decode_score 2 "${xd[@]}"
    fi
    for split in "${perspk_splits[@]+"${perspk_splits[@]}"}"; do
      ckpt=$(ls -t "$exp/$tag"/avg-*.pt 2>/dev/null | head -n 1)
      python3 bench/ctc_per_speaker.py "$ckpt" "$data/fbank/cuts_$split.jsonl.gz" \
        --bpe "$data/lang_$lang/bpe.model" --out "$out/perspk_${split}_$tag.tsv" > /dev/null 2>&1 &&
        echo "[$tag] per speaker ($split): $(awk -F'\t' 'NR > 1 {printf "%s %s/%s  ", $1, $3, $4}' \
          "$out/perspk_${split}_$tag.tsv")" || echo "[$tag] per-speaker $split FAILED"
    done
  ) &
done
wait

# ---- summary: loss curve digest per config, scoring files, everything packed in one archive
for c in "${configs[@]}"; do
  tag=${c%%=*}
  python3 - "$exp/$tag/train_log.jsonl" "$tag" <<'EOF' || true
import json, sys
rows = [json.loads(x) for x in open(sys.argv[1])]
tr = [r for r in rows if "ce" in r]
va = {r["step"]: "%.3f" % r["valid_loss"] + (" ce %.3f/other audio %.3f" % (
    r["valid_ce"], r["valid_ce_other_audio"]) if "valid_ce" in r else "")
      for r in rows if "valid_loss" in r}
print(f"[{sys.argv[2]}] {len(tr)} steps; step, ce, ctc (means of 100 steps), valid loss:")
for i in range(0, len(tr), 100):
    ch = tr[i:i + 100]
    v = [va[s] for s in va if ch[0]["step"] <= s <= ch[-1]["step"]]
    print(f"  {ch[-1]['step']:5d} ce {sum(r['ce'] for r in ch) / len(ch):.3f} "
          f"ctc {sum(r['ctc'] for r in ch) / len(ch):.3f} "
          f"align {sum(r.get('align', 0) for r in ch) / len(ch):.3f} "
          f"t/step {sum(r['time_s'] for r in ch) / len(ch):.3f}s "
          f"cap {ch[-1]['cap_s']} valid {v[-1] if v else '-'}")
EOF
done
tar -czf "$out/train_large_logs.tgz" -C "$recipe" --exclude='*.pt' --exclude='tensorboard' \
  $(cd "$recipe" && ls -d exp/*/ 2>/dev/null) 2>/dev/null
(cd "$out" && tar -czf run_logs.tgz ./*.log && rm -f ./*.log)
if $keep_models; then
  for c in "${configs[@]}"; do
    tag=${c%%=*}
    if [ ${#keep_tags[@]} -gt 0 ] && [[ " ${keep_tags[*]} " != *" $tag "* ]]; then continue; fi
    ckpt=$(ls -t "$exp/$tag"/avg-*.pt 2>/dev/null | head -n 1)
    [ -n "$ckpt" ] || continue
    if $keep_bf16; then
      python3 - "$ckpt" "$exp/$tag/keep-bf16.pt" <<'EOF' || { echo "[$tag] bf16 copy FAILED"; continue; }
import sys, torch
ck = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
ck["model"] = {k: v.bfloat16() if v.is_floating_point() else v for k, v in ck["model"].items()}
torch.save(ck, sys.argv[2])
EOF
      ckpt=$exp/$tag/keep-bf16.pt
    fi
    if [ "$(stat -c %s "$ckpt")" -le $((15 * 1024 * 1024)) ]; then
      cp "$ckpt" "$out/$tag.pt"
    else  # a call returns files up to 16 MiB: join with `cat $tag.pt.part-* > $tag.pt`
      split -b 15M -d "$ckpt" "$out/$tag.pt.part-"
    fi
  done
fi
ls -la "$out"
log "done"
