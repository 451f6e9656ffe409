#!/usr/bin/env bash
# On the GPU machine (from the repository root, carrying .device made by tools/gpu/prepare.sh): unpacks the carried
# Debian packages into /tmp/prefix and configures RoundChat without the UI for sm_90.
# Usage: bash tools/gpu/configure.sh BUILD_DIR [extra cmake arguments...]; source-able variables: none.
set -euo pipefail
build=$1
shift
prefix=/tmp/prefix
lib=$prefix/usr/lib/x86_64-linux-gnu
if [ ! -d $prefix ]; then
    mkdir -p $prefix
    for d in .device/debs/*.deb; do dpkg -x "$d" $prefix; done
fi
PKG_CONFIG_PATH=$lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$prefix \
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DROUNDCHAT_BUILD_UI=OFF -DROUNDCHAT_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$prefix/usr" \
    -DSQLite3_INCLUDE_DIR=$prefix/usr/include -DSQLite3_LIBRARY=$lib/libsqlite3.so \
    -DROUNDCHAT_SHARED_DIR="$PWD/.device/shared" "$@"
