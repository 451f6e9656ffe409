#!/usr/bin/env bash
# Builds the Debian package from a configured and built build folder, installs it with apt, checks the installed
# app headlessly (--version, --help, a one-message chat with the bundled model on the offscreen platform), validates
# the installed desktop entry and AppStream metadata, checks that running the app wrote nothing into the install
# prefix, and removes the package again (also on failure).
#   bash tools/package_smoke.sh <build dir>
# Runs as root or through sudo; tools/setup.sh test calls it on CI.
set -euo pipefail
build=$(cd "${1:?usage: $0 <build dir>}" && pwd)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
start=$SECONDS

rm -f "$build"/roundchat_*.deb
(cd "$build" && cpack -G DEB)
deb=$(echo "$build"/roundchat_*_*.deb)
[ -f "$deb" ] || { echo "package_smoke: no .deb was made in $build" >&2; exit 1; }
dpkg-deb -I "$deb"
contents=$(dpkg-deb -c "$deb")
for f in usr/bin/roundchat usr/bin/roundchat-cli usr/share/roundchat/models/stories260K.gguf \
         usr/share/applications/io.github.roundchat.RoundChat.desktop \
         usr/share/metainfo/io.github.roundchat.RoundChat.metainfo.xml \
         usr/share/icons/hicolor/scalable/apps/io.github.roundchat.RoundChat.svg; do
    grep -q " \./$f\$" <<<"$contents" || { echo "package_smoke: $f is not in the package" >&2; exit 1; }
done
depends=$(dpkg-deb -f "$deb" Depends)
for lib in libc6 libqt6widgets6 libsqlite3-0 libsentencepiece0; do
    grep -q "$lib" <<<"$depends" || { echo "package_smoke: Depends lacks $lib: $depends" >&2; exit 1; }
done
if grep -q '^ROUNDCHAT_CUDA:STRING=OFF$' "$build/CMakeCache.txt" && grep -Eiq 'cuda|cublas|nvidia' <<<"$depends"; then
    echo "package_smoke: a build without CUDA depends on CUDA: $depends" >&2
    exit 1
fi

tmp=$(mktemp -d)
cleanup() {
    DEBIAN_FRONTEND=noninteractive $sudo apt-get remove -y -qq roundchat >/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --reinstall "$deb"
touch "$tmp/installed"

desktop-file-validate /usr/share/applications/io.github.roundchat.RoundChat.desktop
appstreamcli validate --no-net /usr/share/metainfo/io.github.roundchat.RoundChat.metainfo.xml

# A fresh user: nothing of the build machine's settings or data is seen, and everything written lands in $tmp.
run() {
    env HOME="$tmp/home" XDG_DATA_HOME="$tmp/home/.local/share" XDG_CONFIG_HOME="$tmp/home/.config" \
        XDG_CACHE_HOME="$tmp/home/.cache" TMPDIR="$tmp" QT_QPA_PLATFORM=offscreen /usr/bin/roundchat "$@"
}
mkdir -p "$tmp/home"
version=$(run --version)
[ "$version" = "RoundChat $(dpkg-deb -f "$deb" Version)" ] || { echo "package_smoke: --version says '$version'" >&2; exit 1; }
run --help | grep -- --smoke-test >/dev/null
run --smoke-test "Once upon a time" --data-dir "$tmp/data" | tee "$tmp/smoke.txt"
# The bundled model was found in the installed data directory, not in a source tree.
grep -q "smoke test OK: .*(/usr/share/roundchat/models/stories260K.gguf)" "$tmp/smoke.txt"
[ -s "$tmp/data/roundchat.sqlite3" ] || { echo "package_smoke: the smoke test saved no database" >&2; exit 1; }
run --smoke-test "The end"  # its own temporary data folder

written=$(find /usr/share/roundchat /usr/bin -newer "$tmp/installed" \( -type f -o -type d \) -print)
[ -z "$written" ] || { echo "package_smoke: the app wrote into the install prefix: $written" >&2; exit 1; }
$sudo dpkg --verify roundchat
echo "package_smoke: OK in $((SECONDS - start)) s ($(basename "$deb"); Depends: $depends)"
