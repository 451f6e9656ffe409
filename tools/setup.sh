#!/usr/bin/env bash
# Sets up a Debian 12 machine for RoundChat and builds it.
#   bash tools/setup.sh run    install dependencies, build Release, start the app on the bundled model
#   bash tools/setup.sh test   install dependencies, build, run the whole test suite with ctest
# Runs as root or through sudo. Set ROUNDCHAT_NO_APT=1 to skip the apt step on a prepared machine.
set -euo pipefail
mode=${1:-run}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

packages=(build-essential cmake ninja-build pkg-config git
          qt6-base-dev qt6-charts-dev libqt6sql6-sqlite libgl-dev
          libsqlite3-dev sqlite3 libsentencepiece-dev libgtest-dev nlohmann-json3-dev
          clang-14 libclang-rt-14-dev python3 python3-jinja2
          xvfb xauth xdotool imagemagick desktop-file-utils appstream dpkg-dev fakeroot)
if [ "${ROUNDCHAT_NO_APT:-0}" != 1 ]; then
    missing=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${packages[@]}" 2>/dev/null | awk '$1!="ii"{print $2}' || true)
    if [ -n "$missing" ] || ! dpkg-query -W "${packages[@]}" >/dev/null 2>&1; then
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}"
    fi
fi

jobs=$(nproc)
cuda_args=()
if [ "${CI:-}" = true ]; then
    # CI has nvcc but no GPU: compile the CUDA code for one architecture only, to check it builds within budget.
    cuda_args=(-DCMAKE_CUDA_ARCHITECTURES=75-real -DROUNDCHAT_WERROR=ON)
fi

build() {  # build <dir> <build type> [cmake args...]
    local dir=$1 type=$2; shift 2
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" "${cuda_args[@]}" "$@"
    cmake --build "$dir" -j"$jobs"
}

case "$mode" in
run)
    build build Release -DROUNDCHAT_BUILD_TESTS=OFF
    if [ -x build/app/roundchat ] && { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; }; then
        exec build/app/roundchat --model resources/models/stories260K.gguf
    fi
    echo "No display found: starting the terminal chat instead (type /help)."
    exec build/app/roundchat-cli chat --model resources/models/stories260K.gguf
    ;;
test)
    build build Release
    labels=()
    if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
        echo "No NVIDIA GPU here: tests labelled 'gpu' are excluded (run them on a GPU machine)."
        labels=(-LE gpu)
    fi
    (cd build && ctest --output-on-failure -j"$jobs" --timeout 900 "${labels[@]}")
    # The parsers again under AddressSanitizer and UndefinedBehaviorSanitizer.
    build build-asan Debug -DROUNDCHAT_SANITIZE=ON -DROUNDCHAT_BUILD_UI=OFF -DROUNDCHAT_CUDA=OFF
    (cd build-asan && ctest --output-on-failure -j"$jobs" --timeout 900 -L parser)
    if [ "${CI:-}" = true ]; then
        # The .deb: build it, install it with apt, smoke-test the installed app headlessly, remove it.
        bash tools/package_smoke.sh build
    fi
    ;;
*)
    echo "usage: $0 run|test" >&2
    exit 2
    ;;
esac
