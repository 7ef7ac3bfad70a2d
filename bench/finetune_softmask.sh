#!/usr/bin/env bash
# Sparsity-aware fine-tuning: a dense checkpoint -> unique_soft fine-tune(s) -> WER.
#
#   bench/finetune_softmask.sh --ckpt egs/synth_longform/exp/small/avg-3.pt \
#       --data-dir egs/synth_longform/data --minutes 10 --taus "0.5 1.0" --out exp_ft
#
# For each tau: trains `model` (default small, train=gpu) from the checkpoint's weights with the
# decoder attention switched to unique_soft (train.attention.tau, train.attention.budget) for --minutes of
# wall clock (optionally the last --hard-steps schedule steps with unique_hard), keeping its loss
# curve (<out>/loss_<tag>.tsv; the full log is <out>/exp/<tag>/train_log.jsonl). A dense run from
# the same weights for --timing-steps steps sees the same batches (same seed) and gives the step
# time ratio soft/dense. Optionally (--dense-minutes M) a dense fine-tune of M minutes is the
# like-for-like control. Every model (the original checkpoint too) is decoded on the test set
# with decode.sparse.method=unique decode.sparse.budget=<budget> and with dense, and scored; prints a WER
# table and writes <out>/summary.json and <out>/RESULTS.md. Extra hydra overrides after `--`
# go to every training, decoding and scoring run (e.g. -- train.max_duration=900
# decode.batch_size=4).
# On the GPU machine (no venv) it installs .gpu/wheels into /tmp/site when hydra/lhotse/jiwer
# are missing (carry [".gpu"]).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

ckpt="" data_dir="" minutes=10 taus="0.5" budget=512 hard_steps=0 out=exp_finetune_softmask
model=small train=gpu vocab="" timing_steps=30 dense_minutes=0 recipe=$root/egs/synth_longform
python=${PYTHON:-} lr=2e-4 warmup=50 sets=test decode_dtype="" start_max_s=900 stage=1 ckpt_decode=true
usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  cat <<EOF
Options: --ckpt PATH (required) --data-dir DIR (required: fbank/, lang_bpe_<N>/)
  --minutes $minutes --taus "$taus" --budget $budget --hard-steps $hard_steps --out $out
  --model $model --train $train --vocab N|char (default: the single lang_bpe_<N> or lang_char in the data dir)
  --lr $lr --warmup $warmup --timing-steps $timing_steps --dense-minutes $dense_minutes
  --recipe $recipe --sets "$sets" --decode-dtype (float32|bfloat16; default decode's)
  --start-max-s $start_max_s (curriculum cap from the first epoch: windows must be longer than
    the budget, ~budget/12.5 s of audio, or the mask never acts; 900 = train=gpu's end cap)
  --hard-steps N: the last N of train.max_steps schedule positions use unique_hard; with a time
    budget that is the last N / max_steps (train=gpu: 3000) of the minutes
  --python PY (default: .venv/bin/python if present, else python3)
  --skip-ckpt-decode: do not decode the original checkpoint (its WERs are known already)
  --stage N: 1 train (default), 2 loss curves + step times, 3 decode + score; a later stage reuses
    the runs already in --out (with the same --taus / --dense-minutes), e.g. to decode in
    another device call than the one that trained
EOF
  exit "${1:-0}"
}
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --ckpt) ckpt=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --minutes) minutes=$2; shift 2 ;;
    --taus) taus=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --hard-steps) hard_steps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --train) train=$2; shift 2 ;;
    --vocab) vocab=$2; shift 2 ;;
    --lr) lr=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --timing-steps) timing_steps=$2; shift 2 ;;
    --dense-minutes) dense_minutes=$2; shift 2 ;;
    --recipe) recipe=$2; shift 2 ;;
    --sets) sets=$2; shift 2 ;;
    --decode-dtype) decode_dtype=$2; shift 2 ;;
    --start-max-s) start_max_s=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --skip-ckpt-decode) ckpt_decode=false; shift ;;
    --python) python=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "finetune_softmask.sh: unknown option '$1'" >&2; usage 2 ;;
  esac
done
die() { echo "finetune_softmask.sh: ERROR: $*" >&2; exit 1; }
log() { echo "[finetune_softmask $(date -u +%H:%M:%S)] $*"; }
[ -n "$ckpt" ] || die "--ckpt PATH (a dense checkpoint, e.g. exp/small/avg-3.pt) is required"
[ -f "$ckpt" ] || die "--ckpt $ckpt: no such file"
[ -n "$data_dir" ] || die "--data-dir DIR (the recipe's data dir with fbank/ and lang_bpe_<N>/) is required"
[ -d "$data_dir/fbank" ] || die "--data-dir $data_dir has no fbank/: run stages 1-3 first"
ckpt=$(cd "$(dirname "$ckpt")" && pwd)/$(basename "$ckpt")
data_dir=$(cd "$data_dir" && pwd)
recipe=$(cd "$recipe" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
vocab_type=bpe
if [ -z "$vocab" ]; then
  langs=()
  for f in "$data_dir"/lang_bpe_*/bpe.model "$data_dir"/lang_char/bpe.model; do
    [ -f "$f" ] && langs+=("$f")
  done
  [ ${#langs[@]} -eq 1 ] \
    || die "cannot tell the vocabulary from $data_dir/lang_{bpe_*,char}: give --vocab N or --vocab char"
  vocab=$(basename "$(dirname "${langs[0]}")"); vocab=${vocab#lang_}; vocab=${vocab#bpe_}
fi
if [ "$vocab" = char ]; then vocab_type=char; vocab=0; fi

# ---- python: the venv here; on the GPU machine python3 + the carried wheels
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python=$root/.venv/bin/python; else python=python3; fi
fi
site=/tmp/site
if ! PYTHONPATH=$site "$python" -c "import hydra, lhotse, jiwer, soundfile" 2>/dev/null; then
  ls "$root"/.gpu/wheels/*.whl >/dev/null 2>&1 \
    || die "$python lacks hydra/lhotse/jiwer/soundfile and there are no wheels in .gpu/wheels"
  log "installing .gpu/wheels into $site"
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
    "$root"/.gpu/wheels/*.whl || die "pip install of .gpu/wheels failed"
fi
export PYTHONPATH=$site:$root${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
cd "$root"

common=("recipe_dir=$recipe" "data_dir=$data_dir" "exp_dir=$out/exp"
        "hydra.searchpath=[file://$recipe/conf]" "model=$model" "data.lang.vocab_size=$vocab"
        "data.lang.model_type=$vocab_type")
train_run() {  # tag attention minutes [more overrides]
  local tag=$1 att=$2 mins=$3; shift 3
  log "train $tag: train.attention.kind=$att, $mins min, from $ckpt"
  "$python" -m unique_asr.bin.train "${common[@]}" "train=$train" "train.attention.kind=$att" \
    "train.attention.budget=$budget" "train.init_from=$ckpt" "train.tag=$tag" \
    "train.max_minutes=$mins" "train.lr=$lr" "train.warmup_steps=$warmup" \
    "train.curriculum.start_max_s=$start_max_s" "train.ctc_warmup_steps=0" "$@" \
    "${extra[@]+"${extra[@]}"}" > "$out/train_$tag.log" 2>&1 \
    || { tail -n 30 "$out/train_$tag.log" >&2; die "training $tag failed (log: $out/train_$tag.log)"; }
}
decode_run() {  # name checkpoint attention -> prints "<name> <attention> <WER%>"
  local name=$1 ck=$2 att=$3
  local d=("decode.checkpoint=$ck" "decode.model_dir=$(dirname "$ck")" "decode.sparse.method=$att"
           "decode.sparse.budget=$budget" "decode.out_dir=$out/decode/$name" "decode.sets=[${sets// /,}]"
           "decode.results_md=$out/RESULTS.md")
  if [ -n "$decode_dtype" ]; then d+=("decode.dtype=$decode_dtype"); fi
  d+=("${extra[@]+"${extra[@]}"}")
  "$python" -m unique_asr.bin.decode "${common[@]}" "${d[@]}" > "$out/decode_${name}_$att.log" 2>&1 \
    || { tail -n 20 "$out/decode_${name}_$att.log" >&2; die "decoding $name ($att) failed"; }
  "$python" -m unique_asr.bin.score "${common[@]}" "${d[@]}" > "$out/score_${name}_$att.log" 2>&1 \
    || { tail -n 20 "$out/score_${name}_$att.log" >&2; die "scoring $name ($att) failed"; }
  grep -E '^\S+ \S+: WER ' "$out/score_${name}_$att.log" | sed "s|^|$name $att: |" \
    | tee -a "$out/wers.txt"
}
final_ckpt() {  # the checkpoint decoding would pick: newest avg-*.pt, else last.pt
  local d=$out/exp/$1 a
  a=$(ls -t "$d"/avg-*.pt 2>/dev/null | head -n 1 || true)
  echo "${a:-$d/last.pt}"
}

log "out $out; model=$model train=$train vocab $vocab budget $budget taus '$taus' $minutes min"
tags=()
for tau in $taus; do tags+=("soft_tau$tau"); done
if [ "$dense_minutes" != 0 ]; then tags+=(dense_ft); fi
if [ "$stage" -le 1 ]; then
  # 1. step-time reference: dense from the same weights, same seed -> the same first batches
  train_run dense_timing dense "$minutes" "train.halt_after_steps=$timing_steps"
  for tau in $taus; do
    train_run "soft_tau$tau" unique_soft "$minutes" "train.attention.tau=$tau" \
      "train.hard_steps=$hard_steps"
  done
  if [ "$dense_minutes" != 0 ]; then train_run dense_ft dense "$dense_minutes"; fi
fi
for tag in dense_timing "${tags[@]}"; do
  [ -f "$out/exp/$tag/train_log.jsonl" ] || die "$out/exp/$tag/train_log.jsonl missing: run --stage 1"
done

# 2. loss curves (tsv) and step-time ratios over the first timing_steps (identical batches)
if [ "$stage" -le 2 ]; then "$python" - "$out" "$timing_steps" "${tags[@]}"; fi <<'EOF'
import json, sys
from pathlib import Path
out, n, tags = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
def rows(tag):
    return [json.loads(x) for x in (out / "exp" / tag / "train_log.jsonl").read_text().splitlines()]
dense = {r["step"]: r["time_s"] for r in rows("dense_timing") if "time_s" in r}
summary = {"timing_steps": n, "runs": {}}
for tag in tags:
    rs = rows(tag)
    with open(out / f"loss_{tag}.tsv", "w") as f:
        f.write("step\tloss\tce\tctc\tlr\ttime_s\thard\tvalid_loss\n")
        for r in rs:
            f.write("\t".join(str(r.get(k, "")) for k in
                              ("step", "loss", "ce", "ctc", "lr", "time_s", "hard", "valid_loss")) + "\n")
    steps = {r["step"]: r["time_s"] for r in rs if "time_s" in r}
    common = [s for s in range(3, n + 1) if s in steps and s in dense]  # skip compile steps
    # median of per-step ratios: a step that compiles a kernel variant does not dominate it
    per = sorted(steps[s] / max(1e-9, dense[s]) for s in common)
    ratio = per[len(per) // 2] if per else None
    sum_ratio = (sum(steps[s] for s in common) / max(1e-9, sum(dense[s] for s in common))
                 if common else None)
    losses = [r["loss"] for r in rs if "loss" in r]
    valid = [r["valid_loss"] for r in rs if "valid_loss" in r]
    summary["runs"][tag] = {"steps": len(steps), "first_loss": losses[0] if losses else None,
                            "last10_loss": sum(losses[-10:]) / max(1, len(losses[-10:])),
                            "valid_loss_last": valid[-1] if valid else None,
                            "step_time_over_dense": round(ratio, 3) if ratio else None,
                            "step_time_over_dense_sum": round(sum_ratio, 3) if sum_ratio else None,
                            "timed_steps": len(common)}
    print(f"{tag}: {len(steps)} steps, loss {summary['runs'][tag]['first_loss']} -> "
          f"{summary['runs'][tag]['last10_loss']:.4f} (last 10), step time / dense "
          f"{summary['runs'][tag]['step_time_over_dense']} (median per step; total "
          f"{summary['runs'][tag]['step_time_over_dense_sum']}) over steps 3..{n}")
(out / "summary.json").write_text(json.dumps(summary, indent=1))
EOF

: > "$out/wers.txt"
# 3. decode + score: the original checkpoint and every fine-tuned model, sparse and dense
if $ckpt_decode; then
  decode_run dense_ckpt "$ckpt" unique
  decode_run dense_ckpt "$ckpt" dense
fi
for tag in "${tags[@]}"; do
  ck=$(final_ckpt "$tag")
  decode_run "$tag" "$ck" unique
  decode_run "$tag" "$ck" dense
done
"$python" - "$out" <<'EOF'
import json, re, sys
from pathlib import Path
out = Path(sys.argv[1])
s = json.loads((out / "summary.json").read_text())
s["wer"] = {}
for line in (out / "wers.txt").read_text().splitlines():
    m = re.match(r"(\S+) (\S+): (\S+) (\S+): WER ([\d.]+)%", line)
    if m:
        s["wer"].setdefault(m.group(1), {})[f"{m.group(2)}:{m.group(3)}"] = float(m.group(5))
(out / "summary.json").write_text(json.dumps(s, indent=1))
print("\n| model | decode | test set | WER % |\n|---|---|---|---|")
for name, d in s["wer"].items():
    for k, w in d.items():
        att, ts = k.split(":")
        print(f"| {name} | {att} | {ts} | {w:.2f} |")
print("\nstep time over dense (same batches, median per-step ratio):",
      {t: r["step_time_over_dense"] for t, r in s["runs"].items()})
EOF
log "done: $out/summary.json, $out/loss_*.tsv, $out/RESULTS.md"
