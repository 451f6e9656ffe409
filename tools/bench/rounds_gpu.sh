#!/usr/bin/env bash
# One-command Round Attention placement and restore benchmark for the GPU machine (from the repository root,
# carrying .device from tools/gpu/prepare.sh): builds roundchat-bench, roundchat-mkmodel and the CUDA plugin into
# $RC_BUILD, makes the random-weight TinyLlama-1.1B-shape F16 model in $MODELS (if missing), then runs
# `roundchat-bench rounds-gpu` (a 50-round ~16K-token conversation: full KV vs Round Attention VRAM/TTFT/decode, and
# KV restore from SQLite vs re-prefill) and prints its JSON, also written to $OUT/rounds_gpu.json.
# Usage: bash tools/bench/rounds_gpu.sh [extra rounds-gpu options, e.g. --watershed 6 --budget-mb 64]
# Environment: OUT (default /tmp/rounds-gpu-out), RC_BUILD (default /tmp/rc-build), MODELS (default /tmp/models).
set -euo pipefail

OUT=${OUT:-/tmp/rounds-gpu-out}
RC_BUILD=${RC_BUILD:-/tmp/rc-build}
MODELS=${MODELS:-/tmp/models}
mkdir -p "$OUT" "$MODELS"
export LD_LIBRARY_PATH=/tmp/prefix/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}

t0=$SECONDS
tools/gpu/configure.sh "$RC_BUILD" -DROUNDCHAT_BUILD_TESTS=OFF >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
cmake --build "$RC_BUILD" -j"$(nproc)" --target roundchat-bench roundchat-mkmodel roundchat_cuda_plugin \
    >>"$OUT/build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/build.log" | head -40; exit 1; }
echo "built in $((SECONDS - t0)) s" >&2

model=$MODELS/tinyllama-f16.gguf
if [ ! -s "$model" ]; then
    "$RC_BUILD/app/roundchat-mkmodel" --vocab .device/shared/models/ggml-vocab-llama-spm.gguf --out "$model.part" \
        --preset tinyllama --type f16 --context 32768 --name tinyllama-f16 >&2
    mv "$model.part" "$model"
fi

"$RC_BUILD/app/roundchat-bench" rounds-gpu -m "$model" --db /tmp/rounds-gpu.sqlite "$@" >"$OUT/rounds_gpu.json"
cat "$OUT/rounds_gpu.json"
