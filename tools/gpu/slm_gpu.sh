#!/usr/bin/env bash
# The pretrained speech LLM (model=whisper_base_smollm2) on the GPU host, one step per device call
# on a warm machine (its weights exceed one carry; tools/README.md, "Pretrained speech LLM on the
# GPU"). The parts come from `tools/gpu/pack_slm.py --parts .gpu:19.5 .gpu2:22.5 .gpu3`.
#
#   call 1, carry [".gpu"]:   bash tools/gpu/slm_gpu.sh send1
#   call 2, carry [".gpu2"]:  bash tools/gpu/slm_gpu.sh send2   (if the carry is refused as too
#                             large: carry [".gpu2/whisper-base-enc"], then
#                             [".gpu2/smollm2.gguf.part1"], send2 each time)
#   call 3, carry [".gpu3"]:  bash tools/gpu/slm_gpu.sh run [--train-h 10] [train_large.sh options]
#   later calls (no carry):   bash tools/gpu/slm_gpu.sh run --resume ...   (or --decode-only ...)
#   a kept checkpoint back (any call on the warm machine), carry [".gpu4"]:
#                             bash tools/gpu/slm_gpu.sh send-ckpt   (.gpu4/<tag>.pt.part-NN as
#                             train_large.sh --keep returned them, + <tag>.pt.sha256) ->
#                             /tmp/slm/ckpt/<tag>.pt, for train.init_from=... or bench/decode_60min.py
#   long-form benches on a trained model (later calls, no carry):
#                             bash tools/gpu/slm_gpu.sh bench TAG CAP_S [decode_60min.py options]
#                             runs bench/decode_60min.py on exp/TAG's newest avg-*.pt (or
#                             /tmp/slm/ckpt/TAG.pt) with `large`'s features, on the GPU in bf16,
#                             6 tokens/s cap, under a CAP_S timeout; log and JSON lines in $OUT
#
# `run` joins the GGUF (sha256 checked), unpacks the text packages of .gpu3/text/*.deb (if any)
# into /tmp/slm/text, builds `large` with --train-h hours of train and the --corpus-args
# overrides (stages 0-2, Whisper on the GPU; skipped once built), e.g. more distinct training
# text: --corpus-args "corpus.text.wordnet_dir=/tmp/slm/text/usr/share/wordnet" with
# wordnet-base_*.deb in .gpu3/text (tools/README.md); with --mel stage 2 writes the Whisper
# log-mel features instead of the encoder's outputs: a config that trains the encoder's top
# blocks reads them (model.encoder.cached=false model.encoder.trainable_layers=N: the encoder
# then runs in every step), and every config of that call must; then runs train_large.sh
# --skip-build with the model's overrides as --common prefix (any --common given is appended
# to them) and the other options passed on (--config, --deadline-s, --halt-at-s, --resume,
# --extra-decode, --per-gpu, ...);
# train_large.sh's clock (--deadline-s, --halt-at-s) starts at this call's start, build included.
# Everything lives in /tmp/slm (weights, bundle) and the repository's egs/*/data, egs/*/exp.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
w=/tmp/slm/w
b=/tmp/slm/b
die() { echo "[slm_gpu] ERROR: $*" >&2; exit 1; }
need() { [ -e "$1" ] || die "$1 missing: this machine is not the one the earlier calls used \
(/tmp is kept only while it stays warm); start again with send1"; }

case ${1:-} in
  send1)
    mkdir -p "$w" "$b"
    cp -r .gpu/wheels .gpu/tts "$b/"
    cp .gpu/smollm2.gguf.part0 .gpu/smollm2.gguf.sha256 "$w/"
    nvidia-smi -L; du -sh "$w" "$b" ;;
  send2)
    # copies what this call carried of .gpu2; with the repository's tree both files may exceed
    # one carry: then carry [".gpu2/whisper-base-enc"], and [".gpu2/smollm2.gguf.part1"] next
    need "$w/smollm2.gguf.part0"
    sent=0
    for f in .gpu2/smollm2.gguf.part1 .gpu2/whisper-base-enc; do
      if [ -e "$f" ]; then cp -r "$f" "$w/"; sent=$((sent + 1)); fi
    done
    [ "$sent" -gt 0 ] || die "nothing of .gpu2 came with this call: carry .gpu2 (or its two files)"
    for f in smollm2.gguf.part1 whisper-base-enc; do
      [ -e "$w/$f" ] || echo "[slm_gpu] still to send: .gpu2/$f (carry it and run send2 again)"
    done
    ls -la "$w" ;;
  send-ckpt)
    shopt -s nullglob
    parts=(.gpu4/*.pt.part-00)
    [ ${#parts[@]} -gt 0 ] || die ".gpu4/<tag>.pt.part-00 missing: carry .gpu4"
    mkdir -p /tmp/slm/ckpt
    for p0 in "${parts[@]}"; do
      tag=$(basename "${p0%.pt.part-00}")
      cat ".gpu4/$tag.pt.part-"* > "/tmp/slm/ckpt/$tag.pt"
      if [ -f ".gpu4/$tag.pt.sha256" ]; then
        (cd /tmp/slm/ckpt && echo "$(cut -d' ' -f1 "$root/.gpu4/$tag.pt.sha256")  $tag.pt" |
          sha256sum -c) || { rm -f "/tmp/slm/ckpt/$tag.pt"; die "$tag.pt does not match its sha256"; }
      fi
    done
    ls -la /tmp/slm/ckpt ;;
  run)
    shift
    train_h=10
    mel=false
    corpus_args=""
    common=""
    pass=()
    while [ $# -gt 0 ]; do
      case $1 in
        --train-h) train_h=$2; shift 2 ;;
        --common) common=$2; shift 2 ;;
        --corpus-args) corpus_args=$2; shift 2 ;;
        --mel) mel=true; shift ;;
        *) pass+=("$1"); shift ;;
      esac
    done
    need "$w/whisper-base-enc"
    if [ ! -f "$w/smollm2.gguf" ]; then
      need "$w/smollm2.gguf.part1"
      [ -f .gpu3/smollm2.gguf.part2 ] || die ".gpu3/smollm2.gguf.part2 missing: carry .gpu3"
      cat "$w/smollm2.gguf.part0" "$w/smollm2.gguf.part1" .gpu3/smollm2.gguf.part2 > "$w/smollm2.gguf"
      (cd "$w" && echo "$(cat smollm2.gguf.sha256)  smollm2.gguf" | sha256sum -c) ||
        { rm -f "$w/smollm2.gguf"; die "the joined GGUF does not match its sha256"; }
    fi
    shopt -s nullglob
    for deb in .gpu3/text/*.deb; do mkdir -p /tmp/slm/text && dpkg -x "$deb" /tmp/slm/text; done
    shopt -u nullglob
    # the frozen LLM's weights in bf16: no per-call casts under autocast (bench/profile_slm_step.py)
    model="model=whisper_base_smollm2 model.encoder.source=$w/whisper-base-enc model.llm.dtype=bfloat16"
    data=egs/synth_longform/data/large
    # stage 2 writes what the configs read: the frozen encoder's outputs, or with --mel only the
    # log-mel features (an encoder that trains runs in every step; its cached outputs go unused)
    if $mel; then feats=whisper_mel enc_args=model.encoder.cached=false
    else feats=whisper_enc_whisper-base-enc enc_args=""; fi
    if [ ! -f "$data/$feats/cuts_test.jsonl.gz" ]; then
      bash tools/gpu/build_corpus.sh --size large --nj "$(nproc)" --stop-stage 2 \
        --wheels "$b/wheels" --tts-debs "$b/tts" -- \
        "corpus.splits.train.target_s=$((train_h * 3600))" $corpus_args $model $enc_args \
        > "${OUT:-/tmp}/build.log" 2>&1 ||
        { tail -n 30 "${OUT:-/tmp}/build.log"; die "corpus build failed"; }
      grep -E '^\| |^  (train|dev|test)|all done' "${OUT:-/tmp}/build.log"
    fi
    CALL_ELAPSED_S=$SECONDS exec bash tools/gpu/train_large.sh --skip-build \
      --common "$model model.llm.source=$w/smollm2.gguf train=gpu_slm decode.max_tokens_per_second=6 $common" \
      "${pass[@]+"${pass[@]}"}" ;;
  bench)
    [ $# -ge 3 ] || die "usage: slm_gpu.sh bench TAG CAP_S [decode_60min.py options]"
    tag=$2 cap=$3
    shift 3
    ckpt=$(ls -t "egs/synth_longform/exp/$tag"/avg-*.pt 2>/dev/null | head -n 1 || true)
    [ -n "$ckpt" ] || ckpt=/tmp/slm/ckpt/$tag.pt
    need "$ckpt"
    out=${OUT:-/tmp}
    n=0
    while [ -e "$out/bench_${tag}_$n.log" ]; do n=$((n + 1)); done
    log=$out/bench_${tag}_$n.log
    rc=0
    PYTHONPATH=/tmp/site:$root PYTHONUNBUFFERED=1 timeout -k 5 "$cap" python3 \
      bench/decode_60min.py --data-dir egs/synth_longform/data/large --checkpoint "$ckpt" \
      --device cuda --dtype bfloat16 --max-tokens-per-second 6 "$@" > "$log" 2>&1 || rc=$?
    echo "bench $* -> exit $rc at ${SECONDS}s"
    grep -E '^ +[a-z]+: WER|min, [0-9]+ audio|Error|error' "$log" | tail -n 12
    cp bench/results/decode_60min.jsonl "$out/" 2>/dev/null || true ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
