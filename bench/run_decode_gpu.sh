#!/usr/bin/env bash
# One device call: install the carried wheels, run the attention tests at full size on the GPU,
# then the decode-step benchmark; logs and JSON lines go to $OUT (default bench/results).
#   device run, carry [".gpu"]:  bash bench/run_decode_gpu.sh
set -uo pipefail
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
if [ -d .gpu/wheels ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .gpu/wheels/*.whl 2>&1 | tail -2
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,memory.used --format=csv,noheader
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  timeout "${TEST_TIMEOUT:-170}" python3 -m pytest -q -x -p no:cacheprovider tests/attention \
    -k "not softmask" 2>&1 | tee "$OUT/gpu_tests.log" | tail -15
fi
timeout "${BENCH_TIMEOUT:-400}" python3 -m unique_asr.bench.decode_step --out "$OUT/decode_step.jsonl" \
  ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log" | grep -v '^{'
