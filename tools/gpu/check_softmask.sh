#!/usr/bin/env bash
# Issue 5 on the GPU, one device call (carry [".gpu"]; ~3-4 min with Triton compiles):
#   (a) the soft-mask tests at full size (bf16 1e-2, fp32 1e-5 against float64; prints errors),
#   (b) the soft-mask fwd+bwd bench against SDPA flash, bf16, 32/8 heads, D 128, L 8K/16K,
#       batch 1/2/4 (JSON lines to $OUT/softmask_attention.jsonl).
#   device:  bash tools/gpu/from_snapshot.sh tools/gpu/check_softmask.sh
set -uo pipefail
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
python3 -m pytest --version >/dev/null 2>&1 || echo "pytest missing on this machine" >&2
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
echo "== (a) soft-mask GPU tests, cap ${TEST_TIMEOUT:-240}s"
timeout -k 5 "${TEST_TIMEOUT:-240}" python3 -m pytest -q -p no:cacheprovider tests/attention \
  -m gpu -k softmask -s 2>&1 | tee "$OUT/softmask_gpu_tests.log" \
  | grep -E "rel err|ratio|near-tie|passed|failed|Error" | tail -40
echo "(a) exit ${PIPESTATUS[0]} at ${SECONDS}s"
echo "== (b) soft-mask bench, cap ${BENCH_TIMEOUT:-240}s"
timeout -k 5 "${BENCH_TIMEOUT:-240}" python3 bench/softmask_bench.py --seq-lens 8192,16384 \
  --batches 1,2,4 --no-hard --out "$OUT/softmask_attention.jsonl" 2>&1 \
  | tee "$OUT/softmask_bench.log" | grep -v '^{' | tail -20
echo "(b) exit ${PIPESTATUS[0]} at ${SECONDS}s"
