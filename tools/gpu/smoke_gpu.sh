#!/usr/bin/env bash
# One device call that checks the TTS bundle on the GPU machine and times the default corpus
# build there (carry [".gpu"]). Writes logs under $OUT (or ./gpu_out):
#   tools/gpu/smoke_gpu.sh [SECONDS]     SECONDS: deadline for the build stages (default 110)
# Prints the OS and glibc, each engine's throughput (and that it speaks), stage 0 of the default
# corpus with 16 jobs, then stages 1-3 while time remains, and the test split's checksum (the
# same as on the dev box when both builds agree byte for byte).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=${OUT:-gpu_out}
mkdir -p "$out"
deadline=${1:-110}
t0=$SECONDS
{
  grep -E '^(PRETTY_NAME|VERSION_ID)=' /etc/os-release
  ldd --version | head -n1
  echo "nproc $(nproc); $(python3 --version); dpkg $(dpkg --version | head -n1 | awk '{print $7}')"
} 2>&1 | tee "$out/system.txt"

timeout $((deadline)) tools/gpu/build_corpus.sh --size default --nj 16 --stop-stage 0 \
  > "$out/build_stage0.log" 2>&1
echo "stage 0 exit $? after $((SECONDS - t0)) s"
grep -E 'build_corpus|\| ' "$out/build_stage0.log" | grep -v 'hydra arguments'

export PYTHONPATH=/tmp/site:$PWD:$PWD/egs/synth_longform/local
# shellcheck disable=SC1091
. /tmp/tts/env.sh
python3 tools/gpu/tts_throughput.py --n 12 --fortune-dir "$UNIQUE_ASR_FORTUNE_DIR" \
  --json "$out/tts_throughput.jsonl" 2>&1 | tail -n 3

d=egs/synth_longform/data/corpus/test
if [ -f "$d/segments.jsonl" ]; then
  echo "test split sha256 of sums: $(cd "$d" && sha256sum segments.jsonl audio/*.flac | sha256sum)"
fi

left=$((deadline - (SECONDS - t0)))
if [ "$left" -gt 25 ]; then
  timeout "$left" tools/gpu/build_corpus.sh --size default --nj 16 --stage 1 --stop-stage 3 \
    > "$out/build_stage1_3.log" 2>&1
  echo "stages 1-3 exit $? (limit $left s)"
  grep -E 'build_corpus|\| ' "$out/build_stage1_3.log" | grep -v 'hydra arguments'
else
  echo "stages 1-3 skipped: $left s left"
fi
echo "total $((SECONDS - t0)) s"
