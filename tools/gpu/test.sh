#!/usr/bin/env bash
# On the GPU machine: builds everything but the UI into /tmp/rc-test and runs ctest there with the given arguments
# (default: -L gpu, the tests that need the GPU). The log goes to $OUT/gpu_tests.log when
# the device tool's OUT is set.
set -euo pipefail
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-L gpu)
log=${OUT:-/tmp}/gpu_tests.log
export LD_LIBRARY_PATH=/tmp/prefix/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
{
    nvidia-smi -L
    bash tools/gpu/configure.sh /tmp/rc-test >/tmp/rc-test-cmake.log 2>&1 || { tail -40 /tmp/rc-test-cmake.log; exit 1; }
    cmake --build /tmp/rc-test -j"$(nproc)" 2>&1 | grep -E "error|warning|FAILED" | head -40 || true
    cd /tmp/rc-test && ctest -j4 --output-on-failure --timeout 600 "${args[@]}"
} 2>&1 | tee "$log"
