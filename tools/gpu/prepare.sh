#!/usr/bin/env bash
# Run here, before using the GPU machine: fills .device/ (ignored by git) with what a bare GPU machine lacks to build
# RoundChat without the UI: the Debian 12 packages of sentencepiece, SQLite, GoogleTest and nlohmann-json (unpacked
# there under /tmp/prefix by tools/gpu/configure.sh, never into /), and copies of the shared/ fixtures the tests read.
# Then name ".device" in the device tool's carry list.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
shared=${ROUNDCHAT_SHARED_DIR:-$root/../shared}
mkdir -p .device/debs .device/shared/models
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
(cd .device/debs && apt-get download libsentencepiece-dev libsentencepiece0 libprotobuf-lite32 libsqlite3-dev \
    libsqlite3-0 libgtest-dev googletest nlohmann-json3-dev)
cp "$shared"/models/{stories260K.gguf,reference_public.json,tokenizer.model,ggml-vocab-llama-spm.gguf} .device/shared/models/
cp "$shared"/models/tokenizer_tests.{inp,out} .device/shared/models/
cp -r "$shared"/models/chat_templates .device/shared/models/
du -sh .device
