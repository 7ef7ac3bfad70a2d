#!/usr/bin/env bash
# Issue 5, fp32 accuracy of the soft-mask kernels on the GPU, one short device call (<= ~85 s,
# mostly Triton compiles; carry [".gpu"] with .gpu/src.tgz = git archive of HEAD). Two jobs run
# side by side (each compiles the same fp32 kernels on its own CPU core; ~20 GB GPU memory each):
#   (a) bench/softmask_fp32_diag.py: stage-by-stage errors against float64 at the full GQA-4
#       size (page stats, scores, theta, z / log g, out, dq, dk, dv), kernel beside a plain
#       fp32 PyTorch run of the reference, the float64 reference fed the kernel's gate, the
#       score kernel with the fp32 measures off, and the compiled kernels' dot accumulators;
#   (b) the full-size fp32 test that failed (full-g4-d128-soft, 1e-5 against float64).
#   device:  bash tools/gpu/from_snapshot.sh tools/gpu/softmask_fp32_diag.sh
set -uo pipefail
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
CAP=${DIAG_TIMEOUT:-80}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
echo "== (b) full-size fp32 test started in the background, cap ${CAP}s"
timeout -k 3 "$CAP" python3 -m pytest -q -p no:cacheprovider \
  tests/attention/test_softmask.py -m gpu -s \
  -k "test_fp32_matches_float64_reference and full-g4-d128-soft" \
  >"$OUT/softmask_fp32_test.log" 2>&1 &
test_pid=$!
echo "== (a) fp32 stage diagnostic, cap ${CAP}s"
timeout -k 3 "$CAP" python3 bench/softmask_fp32_diag.py \
  --budget-s "$CAP" --out "$OUT/softmask_fp32_diag.jsonl" ${DIAG_ARGS:-} 2>&1 \
  | tee "$OUT/softmask_fp32_diag.log" | grep -v -i warning
echo "(a) exit ${PIPESTATUS[0]} at ${SECONDS}s"
wait "$test_pid"
test_rc=$?
echo "== (b) full-size fp32 test"
grep -E "rel err|ratio|near-tie|passed|failed|skipped|Error" "$OUT/softmask_fp32_test.log" | tail -12
echo "(b) exit $test_rc at ${SECONDS}s"
