#!/usr/bin/env bash
# One-command GPU benchmark against llama.cpp, for the device machine (run from the repository root, carrying .peer
# and .device from tools/gpu/prepare.sh). Stages, run in this order; name some of them to run only those (e.g. two calls of under 10 minutes:
# "build models", then "bench"):
#   build   RoundChat without the UI for sm_90 into $RC_BUILD (Debian libs from .device/debs unpacked into
#           /tmp/prefix), and llama.cpp's llama-bench/llama-quantize into /tmp/peer (bash .peer/peer_build.sh)
#   models  random-weight TinyLlama-shape F16/Q8_0/Q4_0 GGUFs (real LLaMA vocabulary) made by our
#           roundchat-mkmodel into $MODELS; with --7b also Llama-2-7B-shape F16
#   bench   per model: llama-bench and roundchat-bench with the same tests, then the side-by-side table
#           $OUT/bench_table.md (tools/bench/bench_table.py)
# $OUT gets at most 6 files (the device tool returns 8): gpu_bench.log (this output), logs.txt (every tool's log),
# peer.json and ours.json (all models' records), bench_table.md and gpu.csv. Per-model files stay in $WORK.
# Usage: bash tools/bench/gpu_bench.sh [build] [models] [bench] [--7b] [--peak-bw B/s] [-p LIST] [-n LIST]
#                                      [-d LIST] [-r N] [--backend cuda|cpu]
# Environment: OUT (output folder; default /tmp/gpu-bench-out), WORK (default /tmp/gpu-bench-work), RC_BUILD
# (default /tmp/rc-build), PEER (folder with llama-bench, default /tmp/peer), MODELS (default /tmp/models).
set -euo pipefail

OUT=${OUT:-/tmp/gpu-bench-out}
WORK=${WORK:-/tmp/gpu-bench-work}
RC_BUILD=${RC_BUILD:-/tmp/rc-build}
PEER=${PEER:-/tmp/peer}
MODELS=${MODELS:-/tmp/models}
stages=()
with7b=0
peak_bw=3.0e12
prompts=2048
gens=128
depths=0,16384
reps=3
backend=cuda
while [ $# -gt 0 ]; do
    case "$1" in
        build|models|bench) stages+=("$1") ;;
        --7b) with7b=1 ;;
        --peak-bw) peak_bw=$2; shift ;;
        -p) prompts=$2; shift ;;
        -n) gens=$2; shift ;;
        -d) depths=$2; shift ;;
        -r) reps=$2; shift ;;
        --backend) backend=$2; shift ;;
        *) echo "gpu_bench.sh: unknown argument '$1'" >&2; sed -n '2,17p' "$0" >&2; exit 2 ;;
    esac
    shift
done
[ ${#stages[@]} -eq 0 ] && stages=(build models bench)

mkdir -p "$OUT" "$WORK/logs" "$WORK/json"
exec > >(tee -a "$OUT/gpu_bench.log") 2>&1

# Every tool's log, the build logs cut to their ends, into one returned file.
collect_logs() {
    local f
    for f in "$WORK"/logs/*.log; do
        [ -e "$f" ] || continue
        echo "===== $(basename "$f")"
        tail -n 300 "$f"
    done >"$OUT/logs.txt"
}
trap collect_logs EXIT
echo "gpu_bench.sh: stages ${stages[*]} at $(date -u +%FT%TZ) on $(hostname)"

export LD_LIBRARY_PATH=/tmp/prefix/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}

# Runs "$@" as a stage named $1, printing its wall time.
stage() {
    local name=$1 t0=$SECONDS
    shift
    echo "=== stage $name"
    "$@"
    echo "=== stage $name done in $((SECONDS - t0)) s"
}

build_ours() {
    tools/gpu/configure.sh "$RC_BUILD" -DROUNDCHAT_BUILD_TESTS=OFF >"$WORK/logs/rc-cmake.log" 2>&1 \
        || { tail -40 "$WORK/logs/rc-cmake.log"; return 1; }
    cmake --build "$RC_BUILD" -j"$(nproc)" --target roundchat-bench roundchat-mkmodel roundchat_cuda_plugin >"$WORK/logs/rc-build.log" 2>&1 \
        || { grep -E "error|FAILED" "$WORK/logs/rc-build.log" | head -40; return 1; }
    echo "built $RC_BUILD/app/roundchat-bench and roundchat-mkmodel"
}

# Ours and the peer's builds run side by side (each is mostly single-threaded at times), and both must succeed.
build_all() {
    local t0=$SECONDS
    bash .peer/peer_build.sh >"$WORK/logs/peer-build.log" 2>&1 &
    local peer_pid=$!
    local ours_rc=0 peer_rc=0
    build_ours || ours_rc=$?
    echo "ours: rc $ours_rc after $((SECONDS - t0)) s"
    wait $peer_pid || peer_rc=$?
    echo "peer: rc $peer_rc after $((SECONDS - t0)) s"; tail -3 "$WORK/logs/peer-build.log"
    [ $ours_rc -eq 0 ] && [ $peer_rc -eq 0 ]
}

make_model() {  # name preset type
    local out=$MODELS/$1.gguf t0=$SECONDS
    if [ -s "$out" ]; then echo "$out exists"; return 0; fi
    # The trained context only labels the file; 32768 keeps depth 16384 within it for both engines.
    "$RC_BUILD/app/roundchat-mkmodel" --vocab .device/shared/models/ggml-vocab-llama-spm.gguf --out "$out.part" \
        --preset "$2" --type "$3" --context 32768 --name "$1"
    mv "$out.part" "$out"
    echo "$out: $(du -h "$out" | cut -f1) in $((SECONDS - t0)) s"
}

make_models() {
    mkdir -p "$MODELS"
    make_model tinyllama-f16 tinyllama f16
    make_model tinyllama-q8_0 tinyllama q8_0
    make_model tinyllama-q4_0 tinyllama q4_0
    if [ $with7b -eq 1 ]; then make_model llama2-7b-f16 llama2-7b f16; fi
}

bench_one() {  # model path; a failure is reported and the other models still run
    local m=$1 name
    name=$(basename "$m" .gguf)
    local t0=$SECONDS
    if LD_LIBRARY_PATH=$PEER:$LD_LIBRARY_PATH "$PEER/llama-bench" -m "$m" -ngl 99 -fa 1 -p "$prompts" -n "$gens" \
        -d "$depths" -r "$reps" -o json >"$WORK/json/peer_$name.json" 2>"$WORK/logs/peer_$name.log"; then
        echo "$name: llama-bench done in $((SECONDS - t0)) s"
    else
        echo "$name: llama-bench FAILED (rc $?); see logs.txt"; tail -5 "$WORK/logs/peer_$name.log"
    fi
    t0=$SECONDS
    if "$RC_BUILD/app/roundchat-bench" -m "$m" -p "$prompts" -n "$gens" -d "$depths" -r "$reps" -o json \
        --backend "$backend" >"$WORK/json/ours_$name.json" 2>"$WORK/logs/ours_$name.log"; then
        echo "$name: roundchat-bench done in $((SECONDS - t0)) s"
    else
        echo "$name: roundchat-bench FAILED (rc $?); see logs.txt"; tail -5 "$WORK/logs/ours_$name.log"
    fi
}

bench_all() {
    local m
    for tool in "$PEER/llama-bench" "$RC_BUILD/app/roundchat-bench"; do
        [ -x "$tool" ] || { echo "missing $tool: run the build stage first (same warm machine)"; return 1; }
    done
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.memory \
        --format=csv >"$OUT/gpu.csv" 2>&1 || true
    local found=0
    for m in "$MODELS"/*.gguf; do
        [ -e "$m" ] || continue
        found=1
        bench_one "$m"
    done
    [ $found -eq 1 ] || { echo "no models in $MODELS: run the models stage first"; return 1; }
    shopt -s nullglob
    python3 tools/bench/bench_table.py --peer "$WORK"/json/peer_*.json --ours "$WORK"/json/ours_*.json \
        --peak-bw "$peak_bw" --out "$OUT/bench_table.md" --merged "$OUT/peer.json" "$OUT/ours.json"
}

for s in "${stages[@]}"; do
    case "$s" in
        build) stage build build_all ;;
        models) stage models make_models ;;
        bench) stage bench bench_all ;;
    esac
done
echo "gpu_bench.sh: finished at $(date -u +%FT%TZ); outputs in $OUT"
