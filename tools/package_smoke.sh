#!/usr/bin/env bash
# Builds the Debian packages from a configured and built build folder, installs them with apt, checks the installed
# app headlessly (--version, --help, a one-message chat with the bundled model on the offscreen platform), validates
# the installed desktop entry and AppStream metadata, checks that running the app wrote nothing into the install
# prefix, and removes the packages again (also on failure). A CUDA build also makes roundchat-cuda (the GPU plugin
# and cuBLAS): the app is checked first alone, where it must fall back to the CPU because the plugin is missing,
# then with roundchat-cuda, where it uses the GPU or, with no NVIDIA driver or GPU (CI), falls back and says so.
#   bash tools/package_smoke.sh <build dir>
# Runs as root or through sudo; tools/setup.sh test calls it on CI.
set -euo pipefail
build=$(cd "${1:?usage: $0 <build dir>}" && pwd)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
start=$SECONDS
fail() { echo "package_smoke: $*" >&2; exit 1; }
tmp=$(mktemp -d)
cleanup() {
    DEBIAN_FRONTEND=noninteractive $sudo apt-get purge -y -qq roundchat-cuda roundchat >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

rm -f "$build"/roundchat_*.deb "$build"/roundchat-cuda_*.deb
(cd "$build" && cpack -G DEB)
deb=$(echo "$build"/roundchat_*_*.deb)
[ -f "$deb" ] || fail "no .deb was made in $build"
version=$(dpkg-deb -f "$deb" Version)
cuda_deb=""
if [ -f "$build/lib/roundchat/libroundchat-cuda.so" ]; then
    cuda_deb=$(echo "$build"/roundchat-cuda_*_*.deb)
    [ -f "$cuda_deb" ] || fail "a CUDA build made no roundchat-cuda package"
fi

dpkg-deb -I "$deb"
contents=$(dpkg-deb -c "$deb")
for f in usr/bin/roundchat usr/bin/roundchat-cli usr/share/roundchat/models/stories260K.gguf \
         usr/share/applications/io.github.roundchat.RoundChat.desktop \
         usr/share/metainfo/io.github.roundchat.RoundChat.metainfo.xml \
         usr/share/icons/hicolor/scalable/apps/io.github.roundchat.RoundChat.svg; do
    grep -q " \./$f\$" <<<"$contents" || fail "$f is not in the package"
done
depends=$(dpkg-deb -f "$deb" Depends)
for lib in libc6 libqt6widgets6 libsqlite3-0 libsentencepiece0; do
    grep -q "$lib" <<<"$depends" || fail "Depends lacks $lib: $depends"
done
# The app itself must install and start where there is no CUDA at all.
! grep -Eiq 'cuda|cublas|nvidia' <<<"$depends" || fail "roundchat depends on CUDA: $depends"
! grep -Eq 'libcu|roundchat-cuda' <<<"$contents" || fail "roundchat holds CUDA files"
for f in /usr/bin/roundchat /usr/bin/roundchat-cli; do
    dpkg-deb --fsys-tarfile "$deb" | tar -xO ".$f" >"$tmp/elf"
    ! readelf -d "$tmp/elf" | grep -Eq 'NEEDED.*(libcuda|libcublas)' || fail "$f links CUDA libraries"
done
if [ -n "$cuda_deb" ]; then
    dpkg-deb -I "$cuda_deb"
    cuda_contents=$(dpkg-deb -c "$cuda_deb")
    for f in libroundchat-cuda.so libcublas.so.13 libcublasLt.so.13; do
        grep -q " \./usr/lib/roundchat/$f\$" <<<"$cuda_contents" || fail "$f is not in roundchat-cuda"
    done
    grep -q "roundchat (= $version)" <<<"$(dpkg-deb -f "$cuda_deb" Depends)" ||
        fail "roundchat-cuda must depend on roundchat (= $version)"
fi

apt_install() {  # apt_install <deb>: then marks the time, for written_into_prefix
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --reinstall "$1"
    touch "$tmp/installed"
}
written_into_prefix() {
    local written
    written=$(find /usr/share/roundchat /usr/bin /usr/lib/roundchat -newer "$tmp/installed" \( -type f -o -type d \) \
              -print 2>/dev/null || true)
    [ -z "$written" ] || fail "the app wrote into the install prefix: $written"
}
apt_install "$deb"

desktop-file-validate /usr/share/applications/io.github.roundchat.RoundChat.desktop
appstreamcli validate --no-net /usr/share/metainfo/io.github.roundchat.RoundChat.metainfo.xml

# A fresh user: nothing of the build machine's settings or data is seen, and everything written lands in $tmp.
run() {
    env -u LD_LIBRARY_PATH HOME="$tmp/home" XDG_DATA_HOME="$tmp/home/.local/share" \
        XDG_CONFIG_HOME="$tmp/home/.config" XDG_CACHE_HOME="$tmp/home/.cache" TMPDIR="$tmp" QT_QPA_PLATFORM=offscreen \
        /usr/bin/roundchat "$@"
}
have_gpu=false
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    have_gpu=true
fi
# smoke <expected backend line pattern>: one chat with the bundled model (default backend: Auto); its log on stderr
# carries "CPU fallback: <reason>" when no GPU was used.
smoke() {
    rm -rf "$tmp/data"
    if ! run --smoke-test "Once upon a time" --data-dir "$tmp/data" >"$tmp/smoke.txt" 2>&1; then
        cat "$tmp/smoke.txt"
        fail "the smoke test failed"
    fi
    cat "$tmp/smoke.txt"
    # The bundled model was found in the installed data directory, not in a source tree.
    grep -q "smoke test OK: .*(/usr/share/roundchat/models/stories260K.gguf)" "$tmp/smoke.txt" ||
        fail "no smoke test OK line with the installed model"
    [ -s "$tmp/data/roundchat.sqlite3" ] || fail "the smoke test saved no database"
    grep -Eq "$1" "$tmp/smoke.txt" || fail "expected /$1/ in the app's output"
}

mkdir -p "$tmp/home"
[ "$(run --version)" = "RoundChat $version" ] || fail "--version says '$(run --version)'"
run --help | grep -- --smoke-test >/dev/null
if [ -n "$cuda_deb" ]; then
    smoke "CPU fallback: .*the CUDA plugin is not installed .*install the roundchat-cuda package"
else
    smoke "CPU fallback: .*built without CUDA"
fi
run --smoke-test "The end" >/dev/null 2>&1 || fail "the smoke test in its own temporary data folder failed"
written_into_prefix

if [ -n "$cuda_deb" ]; then
    apt_install "$cuda_deb"
    # cuBLAS comes from the package, not from a CUDA toolkit that happens to be on this machine.
    env -u LD_LIBRARY_PATH ldd /usr/lib/roundchat/libroundchat-cuda.so | tee "$tmp/ldd.txt"
    ! grep -q "not found" "$tmp/ldd.txt" || fail "the plugin misses libraries"
    for lib in libcublas.so.13 libcublasLt.so.13; do
        grep -q "$lib => /usr/lib/roundchat/$lib" "$tmp/ldd.txt" || fail "$lib is not the packaged one"
    done
    if $have_gpu; then
        smoke "smoke test OK"
        ! grep -q "on the CPU, loaded" "$tmp/smoke.txt" || fail "an NVIDIA GPU is here, but the app ran on the CPU"
    else
        smoke "CPU fallback: .*(NVIDIA driver|CUDA device)"
    fi
    written_into_prefix
fi

$sudo dpkg --verify roundchat
[ -z "$cuda_deb" ] || $sudo dpkg --verify roundchat-cuda
echo "package_smoke: OK in $((SECONDS - start)) s ($(basename "$deb")${cuda_deb:+ and $(basename "$cuda_deb")};" \
     "Depends: $depends)"
