#!/usr/bin/env bash
# One device call (carry [".gpu"]), each part under its own time cap so earlier results come
# back whatever happens later; logs and JSON lines go to $OUT (default bench/results):
#   (a) the attention GPU tests at full size (FlashInfer's JIT build runs meanwhile),
#   (b) the decode-step bench (batch 80, 8K/16K/32K; FlashInfer, SDPA in the same process),
#   (c) if SOFTMASK=1: softmask bench (batch 1) and the fp32 GQA-4 softmask errors,
#   (d) if FP8=1: the decode-step bench again with one-byte page means (ONE_BYTE, default
#       "fp8 int8"; same GPU, same call; ONE_BYTE_ARGS, default BENCH_ARGS),
#   (e) if E2E=1: the CUDA-graph tests, then bench/e2e_decode.py --cuda-graphs (Fig. 3 geometry,
#       eager and graphed, dense and unique; E2E_ARGS adds e.g. --stats-dtype fp8).
#   device run, carry [".gpu"]:  bash bench/run_decode_gpu.sh
#   issue 17 in one call:        SKIP_TESTS=1 FP8=1 E2E=1 bash bench/run_decode_gpu.sh
set -uo pipefail
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
if [ -d .gpu/wheels ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .gpu/wheels/*.whl 2>&1 | tail -2
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
timeout -k 5 150 python3 bench/fi_warm.py > "$OUT/fi_warm.log" 2>&1 &
WARM=$!
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  echo "== (a) GPU tests, cap ${TEST_TIMEOUT:-130}s"
  timeout -k 5 "${TEST_TIMEOUT:-130}" python3 -m pytest -q -x -p no:cacheprovider tests/attention \
    -m gpu -k "not softmask" 2>&1 | tee "$OUT/gpu_tests.log" | grep -v Warning | tail -8
  echo "(a) exit ${PIPESTATUS[0]} at ${SECONDS}s"
fi
wait $WARM; tail -1 "$OUT/fi_warm.log"
echo "== (b) bench, cap ${BENCH_TIMEOUT:-160}s"
timeout -k 5 "${BENCH_TIMEOUT:-160}" python3 bench/decode_step.py \
  --out "$OUT/decode_step.jsonl" ${BENCH_ARGS:---skip-tables --long-contexts=} 2>&1 \
  | tee "$OUT/bench.log" | grep -v '^{' | grep -v Warning
echo "(b) exit ${PIPESTATUS[0]} at ${SECONDS}s"
if [ "${SOFTMASK:-0}" = 1 ]; then
  left=$(( ${TOTAL:-345} - SECONDS ))
  echo "== (c) softmask, ${left}s left"
  if [ "$left" -gt 40 ]; then
    timeout -k 5 $(( left - 25 )) python3 bench/softmask_bench.py --seq-lens 8192,16384 \
      --batches 1 --out "$OUT/softmask_attention.jsonl" 2>&1 | tee "$OUT/softmask.log" | tail -6
    left=$(( ${TOTAL:-345} - SECONDS ))
    [ "$left" -gt 10 ] && (cd tests/attention && timeout -k 3 $(( left - 3 )) python3 -c "
import torch, test_softmask as t
e = t._compare(2, 32, 8, 2048, 128, 8, 512, 0.5, 'soft', torch.float32, [2048, 1500])
print('fp32 GQA-4 full softmask out/dq/dk/dv rel err', ['%.2e' % x for x in e])" 2>&1 | tail -2)
  fi
fi
if [ "${FP8:-0}" = 1 ]; then
  for sd in ${ONE_BYTE:-fp8 int8}; do
    echo "== (d) bench with $sd page means, cap ${BENCH_TIMEOUT:-160}s"
    timeout -k 5 "${BENCH_TIMEOUT:-160}" python3 bench/decode_step.py --stats-dtype "$sd" \
      --out "$OUT/decode_step.jsonl" ${ONE_BYTE_ARGS:-${BENCH_ARGS:---skip-tables --long-contexts=}} 2>&1 \
      | tee "$OUT/bench_$sd.log" | grep -v '^{' | grep -v Warning
    echo "(d) $sd exit ${PIPESTATUS[0]} at ${SECONDS}s"
  done
fi
if [ "${E2E:-0}" = 1 ]; then
  echo "== (e) CUDA-graph tests, then the whole-model bench, cap ${E2E_TIMEOUT:-240}s"
  timeout -k 5 90 python3 -m pytest -q -x -p no:cacheprovider tests/decoding/test_cuda_graph.py \
    2>&1 | tee "$OUT/cuda_graph_tests.log" | grep -v Warning | tail -4
  timeout -k 5 "${E2E_TIMEOUT:-240}" python3 bench/e2e_decode.py --cuda-graphs \
    --out "$OUT/e2e_decode.jsonl" ${E2E_ARGS:-} 2>&1 | tee "$OUT/e2e.log" | grep -v '^{' | tail -12
  echo "(e) exit ${PIPESTATUS[0]} at ${SECONDS}s"
fi
echo "done at ${SECONDS}s"
