#!/usr/bin/env bash
# Issue 5, fp32 accuracy of the soft-mask kernels on the GPU, one short device call (~60-90 s,
# mostly Triton compiles; carry [".gpu"] with .gpu/src.tgz = git archive of HEAD):
#   (a) bench/softmask_fp32_diag.py: stage-by-stage errors against float64 at the full GQA-4
#       size (page stats, scores, theta, z / log g, out, dq, dk, dv), kernel beside a plain
#       fp32 PyTorch run of the reference, the float64 reference fed the kernel's gate, the
#       score kernel with the fp32 measures off, and the compiled kernels' dot accumulators;
#   (b) the full-size fp32 test that failed (full-g4-d128-soft, 1e-5 against float64).
#   device:  bash local/gpu/from_snapshot.sh local/gpu/softmask_fp32_diag.sh
set -uo pipefail
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
echo "== (a) fp32 stage diagnostic, cap ${DIAG_TIMEOUT:-55}s"
timeout -k 5 "${DIAG_TIMEOUT:-55}" python3 bench/softmask_fp32_diag.py \
  --budget-s "${DIAG_TIMEOUT:-55}" --out "$OUT/softmask_fp32_diag.jsonl" ${DIAG_ARGS:-} 2>&1 \
  | tee "$OUT/softmask_fp32_diag.log" | grep -v -i warning
echo "(a) exit ${PIPESTATUS[0]} at ${SECONDS}s"
echo "== (b) full-size fp32 test, cap ${TEST_TIMEOUT:-33}s"
timeout -k 5 "${TEST_TIMEOUT:-33}" python3 -m pytest -q -p no:cacheprovider \
  tests/attention/test_softmask.py -m gpu -s \
  -k "test_fp32_matches_float64_reference and full-g4-d128-soft" 2>&1 \
  | tee "$OUT/softmask_fp32_test.log" \
  | grep -E "rel err|ratio|near-tie|passed|failed|skipped|Error" | tail -12
echo "(b) exit ${PIPESTATUS[0]} at ${SECONDS}s"
