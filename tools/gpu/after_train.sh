#!/usr/bin/env bash
# The device call that follows tools/gpu/train_large.sh on the same (still warm) machine:
#   sparsity-aware fine-tuning of the best small model (lowest last validation loss)
#   with unique_soft (bench/finetune_softmask.sh: loss curve, step time against dense on the
#   same batches, WER with unique decoding at budget 512 and dense): tau 1.0 on GPU 1, tau 0.5
#   on GPU 0 (which also decodes the dense checkpoint with unique, budget 512); FT_MINUTES each.
#   EXTRA_CMD (optional): a command run on GPU 0 alongside (e.g. the soft-mask GPU tests).
#   tools/gpu/after_train.sh [--deadline-s 560]        (carry [".gpu"], timeout_s 600)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
deadline_s=560
ft_minutes=${FT_MINUTES:-2}
[ "${1:-}" = --deadline-s ] && deadline_s=$2
out=${OUT:-$root/exp_gpu_out}
mkdir -p "$out"
recipe=$root/egs/synth_longform
exp=$recipe/exp
data=$recipe/data/${SIZE:-large}
log() { echo "[after_train $(date -u +%H:%M:%S) +$SECONDS s] $*"; }
ft_args=(--data-dir "$data" --python python3 --timing-steps 20 --
         train.max_duration=600 train.save_every=100 train.valid_every=100 train.average_last=1
         train.valid_wer_recordings=0)

best=""
if [ -d "$data/fbank" ]; then
  best=$(python3 - "$exp" <<'EOF'
import json, sys
from pathlib import Path
best = None
for f in Path(sys.argv[1]).glob("*/train_log.jsonl"):
    v = [json.loads(x)["valid_loss"] for x in f.read_text().splitlines() if "valid_loss" in x]
    if v and not f.parent.name.startswith(("ft_", "dense_", "soft_")) and (best is None or v[-1] < best[0]):
        best = (v[-1], f.parent.name)
print(best[1] if best else "")
EOF
)
fi
ck=""
[ -n "$best" ] && ck=$(ls -t "$exp/$best"/avg-*.pt 2>/dev/null | head -n 1)
[ -n "$best" ] && [ -z "$ck" ] && ck=$exp/$best/last.pt
# copy the loss curves into $OUT as they appear: a call cut at its time limit still returns them
(while sleep 15; do
   for f in "$exp"/ft_*/loss_*.tsv "$exp"/ft_*/summary.json "$exp"/ft_*/wers.txt; do
     [ -f "$f" ] && cp "$f" "$out/$(basename "$(dirname "$f")")_$(basename "$f")"
   done
 done) &
packer=$!
pids=()
if [ -n "$ck" ] && [ -f "$ck" ]; then
  log "fine-tuning from $ck (config $best): tau 1.0 on GPU 1, tau 0.5 on GPU 0, $ft_minutes min each"
  (CUDA_VISIBLE_DEVICES=1 bash bench/finetune_softmask.sh --ckpt "$ck" --minutes "$ft_minutes" \
     --taus 1.0 --out "$exp/ft_tau1" --skip-ckpt-decode "${ft_args[@]}" > "$out/ft_tau1.log" 2>&1
   log "ft tau 1.0 exit $?"; tail -n 12 "$out/ft_tau1.log") &
  pids+=($!)
  (CUDA_VISIBLE_DEVICES=0 bash bench/finetune_softmask.sh --ckpt "$ck" --minutes "$ft_minutes" \
     --taus 0.5 --out "$exp/ft_tau05" "${ft_args[@]}" > "$out/ft_tau05.log" 2>&1
   log "ft tau 0.5 exit $?"; tail -n 12 "$out/ft_tau05.log") &
  pids+=($!)
else
  log "no trained model on this machine (fresh machine?): nothing to fine-tune"
fi
if [ -n "${EXTRA_CMD:-}" ]; then  # e.g. the soft-mask GPU tests, on GPU 0 beside the fine-tune
  (CUDA_VISIBLE_DEVICES=0 bash -c "$EXTRA_CMD" > "$out/extra.log" 2>&1
   log "extra command exit $?"; tail -n 15 "$out/extra.log") &
  pids+=($!)
fi
[ ${#pids[@]} -eq 0 ] || wait "${pids[@]}"
kill "$packer" 2>/dev/null
(cd "$recipe" && tar -czf "$out/after_train_logs.tgz" --exclude='*.pt' --exclude='tensorboard' \
   $(ls -d exp/ft_*/ 2>/dev/null)) || true
(cd "$out" && tar -czf after_train_run_logs.tgz ./*.log && rm -f ./*.log)
ls -la "$out"
log "done"
