#!/usr/bin/env bash
# End-to-end test of the real `roundchat` executable: it runs as a child process on its own Xvfb display with a
# temporary home, and is driven from outside with real X keyboard input (xdotool, keyboard only). It follows the app
# through the lines it logs on stderr ("model ready", "answer done", "restored N rounds") and through its SQLite
# database, and saves window screenshots (ImageMagick `import`).
#   e2e_xvfb_app_test.sh ROUNDCHAT_EXECUTABLE MODEL.gguf SCREENSHOT_DIR
# Flow: send two messages (badge and dashboard count in the log, recall rows in the database); Ctrl+N and a second
# conversation; Ctrl+3/4 pages; Ctrl+, settings and Escape; Ctrl+Shift+F history search and Enter on the hit;
# SIGTERM, restart, and the reopened conversation's KV must come from its snapshots (nothing but BOS prefilled); then
# the restored conversation answers again; SIGKILL mid-answer, then integrity_check, every committed message intact,
# and the reopened conversation answers once more. Screenshots: chat.png, history.png, dashboard.png, models.png.
# wait_for evaluates single-quoted conditions later, and they read variables set just before it:
# shellcheck disable=SC2016,SC2034
set -euo pipefail

if [ $# -ne 3 ]; then
    echo "usage: $0 ROUNDCHAT_EXECUTABLE MODEL.gguf SCREENSHOT_DIR" >&2
    exit 2
fi
exe=$1
model=$2
shots=$3
wait_s=${ROUNDCHAT_E2E_WAIT_S:-120}  # per step: CI has 2 slow shared cores

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# A missing tool fails the test rather than skipping it silently: tools/setup.sh installs all of them.
for tool in Xvfb xdotool import sqlite3 md5sum; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (tools/setup.sh installs it)"
done
[ -x "$exe" ] || fail "no executable at $exe"
[ -f "$model" ] || fail "no model at $model"

tmp=$(mktemp -d)
xvfb_pid=""
app_pid=""
cleanup() {
    local status=$?
    for pid in $app_pid $xvfb_pid; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$status" -ne 0 ]; then
        for log in "$tmp"/*.log; do
            [ -f "$log" ] && { echo "--- $(basename "$log") (last 40 lines)"; tail -n 40 "$log"; }
        done
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# wait_for DESCRIPTION CONDITION: evaluates the shell text CONDITION until it succeeds (single-quote it so that its
# $(...) runs on every try); fails after $wait_s or when the app has died.
wait_for() {
    local what=$1 condition=$2 deadline=$((SECONDS + wait_s))
    until eval "$condition" >/dev/null 2>&1; do
        [ -z "$app_pid" ] || kill -0 "$app_pid" 2>/dev/null || fail "the app exited while waiting for $what"
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${wait_s}s waiting for $what"
        sleep 0.3
    done
}

# The display: Xvfb picks a free number and writes it to fd 3 once it accepts connections. -noreset: without it the
# server resets when the killed app was its last client, and the restarted app can find no display under load.
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp -noreset 3>"$tmp/display" >"$tmp/xvfb.log" 2>&1 &
xvfb_pid=$!
wait_for "Xvfb" 'test -s "$tmp/display"'
DISPLAY=":$(head -n 1 "$tmp/display")"
export DISPLAY

# A private home: settings, database and caches all live under $tmp.
export HOME=$tmp/home XDG_CONFIG_HOME=$tmp/config XDG_DATA_HOME=$tmp/share XDG_CACHE_HOME=$tmp/cache
export XDG_RUNTIME_DIR=$tmp/runtime QT_QPA_PLATFORM=xcb
unset QT_QPA_OFFSCREEN_NO_GLX
mkdir -p "$HOME" "$XDG_CONFIG_HOME/RoundChat" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
printf '[generation]\nmaxNewTokens=24\ntemperature=0\n' >"$XDG_CONFIG_HOME/RoundChat/RoundChat.conf"
db=$XDG_DATA_HOME/RoundChat/RoundChat/roundchat.sqlite3
sql() { sqlite3 -batch -noheader "file:$db?mode=ro" "$1"; }

log=""
window=""
start_app() {  # start_app RUN_NAME
    log=$tmp/$1.log
    "$exe" --model "$model" >"$log" 2>&1 &
    app_pid=$!
    wait_for "the main window" find_window
    wait_for "the model" 'grep -q "model ready:" "$log"'
    xdotool windowfocus --sync "$window"
}
find_window() { window=$(xdotool search --onlyvisible --name '^RoundChat$' | head -n 1) && [ -n "$window" ]; }
stop_app() {  # SIGTERM: Qt has no handler for it, so this is an abrupt end with no chance to flush anything
    kill -TERM "$app_pid"
    wait "$app_pid" 2>/dev/null || true
    app_pid=""
}
keys() { xdotool key --delay 80 "$@"; sleep 0.5; }
type_text() { xdotool type --delay 40 "$1"; }
shot() {  # shot NAME: the main window as $shots/NAME.png
    sleep 1.5  # let the page paint (charts animate in)
    import -window "$window" "$shots/$1.png"
    md5sum <"$shots/$1.png" | cut -d' ' -f1 >"$tmp/$1.md5"
}

answers_logged() { grep -c "answer done:" "$log" || true; }
answers_saved() { sql "SELECT count(*) FROM messages WHERE role = 2"; }  # role 2: assistant

# send TEXT: types into the message box (Ctrl+L focuses it) and presses Enter; returns after the answer is saved.
send() {
    local logged saved
    logged=$(answers_logged)
    saved=$(answers_saved)
    keys ctrl+l
    type_text "$1"
    keys Return
    wait_for "the answer to '$1'" 'test "$(answers_logged)" -gt "$logged"'
    wait_for "the answer to '$1' in the database" 'test "$(answers_saved)" -gt "$saved"'
    [ "$(sql "SELECT count(*) FROM messages WHERE role = 1 AND text = '$1'")" -eq 1 ] ||
        fail "the question '$1' is not in the database"
}

mkdir -p "$shots"
start_app first
echo "display $DISPLAY, window $window, database $db"

# 1. Two rounds in a new conversation: streamed answers, each with its recall badge and a dashboard bar.
send "Once upon a time"
send "The little dog"
conv=$(sql "SELECT conversation_id FROM messages WHERE text = 'Once upon a time'")
[ -n "$conv" ] || fail "the first question is not in the database"
grep -qE "answer done: conversation $conv round 1; badge \"[^\"]+\"; dashboard answers 1$" "$log" ||
    fail "round 1 has no recall badge or the dashboard did not count it"
grep -qE "answer done: conversation $conv round 2; badge \"[^\"]+\"; dashboard answers 2$" "$log" ||
    fail "round 2 has no recall badge or the dashboard did not count it"
[ "$(sql "SELECT count(*) FROM messages WHERE conversation_id = $conv")" -eq 4 ] || fail "expected 4 messages"
[ "$(sql "SELECT count(*) FROM recall_log JOIN messages m ON m.id = message_id WHERE m.conversation_id = $conv")" \
    -eq 2 ] || fail "expected a recall log row per answer"
# Both rounds' KV reach the database in the background; the restart below needs them.
wait_for "both rounds' KV snapshots" 'test "$(sql "SELECT count(DISTINCT r.round_index) FROM kv_snapshots s
    JOIN rounds r ON r.id = s.round_id WHERE r.conversation_id = $conv")" -eq 2'

# 2. Keyboard only: a new conversation (Ctrl+N), then the pages.
keys ctrl+n
send "A big red ball"
[ "$(sql "SELECT count(*) FROM conversations")" -eq 2 ] || fail "Ctrl+N did not start a second conversation"
keys ctrl+3
shot dashboard
keys ctrl+4
shot models
keys ctrl+comma
wait_for "the settings dialog" "xdotool search --onlyvisible --name '^Settings\$'"
keys Escape
wait_for "the settings dialog to close" "! xdotool search --onlyvisible --name '^Settings\$'"
xdotool windowfocus --sync "$window"

# 3. History search (Ctrl+Shift+F): Enter moves to the first hit, Enter again opens its conversation.
keys ctrl+shift+f
type_text "upon"
sleep 2  # the search waits for typing to pause, then asks the storage thread
shot history
opened=$(grep -c "conversation $conv: restored" "$log" || true)
keys Return
keys Return
wait_for "the search hit to open conversation $conv" \
    'test "$(grep -c "conversation $conv: restored" "$log")" -gt "$opened"'
for a in history dashboard models; do
    for b in history dashboard models; do
        [ "$a" = "$b" ] || ! cmp -s "$tmp/$a.md5" "$tmp/$b.md5" || fail "the $a and $b screenshots are identical"
    done
done

# 4. An abrupt end and a restart: the last conversation reopens from its KV snapshots, nothing prefilled but BOS.
stop_app
start_app second
wait_for "the restore of conversation $conv" 'grep -q "conversation $conv: restored" "$log"'
line=$(grep "conversation $conv: restored" "$log" | head -n 1)
echo "after restart: $line"
[[ $line =~ restored\ 2\ rounds\ from\ disk\ \(([0-9]+)\ tokens\)\;\ 0\ rounds\ recomputed\;\ ([0-9]+)\ tokens ]] ||
    fail "expected both rounds restored and none recomputed: $line"
[ "${BASH_REMATCH[1]}" -gt 0 ] || fail "no KV tokens imported: $line"
[ "${BASH_REMATCH[2]}" -le 1 ] || fail "the restored conversation was prefilled again: $line"
send "The end"
grep -qE "answer done: conversation $conv round 3; badge \"[^\"]+\"" "$log" ||
    fail "the restored conversation did not continue as round 3"
keys ctrl+1
shot chat

# 5. A crash mid-answer (SIGKILL): what was committed survives, the database is intact, the app reopens and answers.
# A conversation keeps the generation settings it was created with, so the long answer (maxNewTokens=1500: the
# bundled model runs on for hundreds of tokens, seconds on CI) is asked in a new one; the kill comes a second after
# the question is stored, long before the answer's one save at its end. The settings file is edited in place: it also
# holds ui/lastConversation.
set_max_new_tokens() {
    sed -i "s/^maxNewTokens=.*/maxNewTokens=$1/" "$XDG_CONFIG_HOME/RoundChat/RoundChat.conf"
    grep -qx "maxNewTokens=$1" "$XDG_CONFIG_HOME/RoundChat/RoundChat.conf" || fail "could not set maxNewTokens=$1"
}
committed() { sql "SELECT id || '|' || conversation_id || '|' || role || '|' || text FROM messages ORDER BY id"; }
stop_app
set_max_new_tokens 1500
start_app third
wait_for "the restore of conversation $conv" 'grep -q "conversation $conv: restored" "$log"'
committed >"$tmp/before_kill.txt"
before=$(wc -l <"$tmp/before_kill.txt")
[ "$before" -ge 8 ] || fail "expected at least the 8 messages of four rounds before the kill, found $before"
question="Once there was a tiny bird"
keys ctrl+n
keys ctrl+l
type_text "$question"
keys Return
wait_for "the unanswered question in the database" \
    'test "$(sql "SELECT count(*) FROM messages WHERE role = 1 AND text = '\''$question'\''")" -eq 1'
crashed=$(sql "SELECT conversation_id FROM messages WHERE text = '$question'")
sleep 1  # let the answer stream a while: at 50-70 tokens/s a second is far from its end
[ "$(answers_logged)" -eq 0 ] ||
    fail "the long answer finished before the kill: nothing was interrupted (raise maxNewTokens or change the prompt)"
kill -KILL "$app_pid"
wait "$app_pid" 2>/dev/null || true
app_pid=""
[ "$(answers_logged)" -eq 0 ] ||
    fail "the long answer finished before the kill landed: nothing was interrupted (raise maxNewTokens)"
echo "killed mid-answer in conversation $crashed, $before messages committed before"
[ "$(sql "PRAGMA integrity_check")" = "ok" ] || fail "integrity_check after the kill: $(sql "PRAGMA integrity_check")"
committed | head -n "$before" | cmp -s - "$tmp/before_kill.txt" ||
    fail "messages committed before the kill changed: $(committed | head -n "$before" | diff "$tmp/before_kill.txt" -)"
[ "$(sql "SELECT count(*) FROM messages WHERE conversation_id = $crashed")" -eq 1 ] ||
    fail "conversation $crashed should hold just its question, not a part of the killed answer"
set_max_new_tokens 24
start_app fourth
wait_for "a conversation reopened after the kill" 'grep -q ": restored" "$log"'
keys ctrl+shift+f  # reopen the crashed conversation through history search, as in step 3
type_text "tiny bird"
sleep 2
keys Return
keys Return
wait_for "the reopen of conversation $crashed" 'grep -q "conversation $crashed: restored" "$log"'
echo "after the kill: $(grep "conversation $crashed: restored" "$log" | head -n 1)"
send "The bird sang"
grep -qE "answer done: conversation $crashed round [0-9]+; badge" "$log" ||
    fail "the reopened conversation $crashed did not answer after the kill"
echo "PASS: screenshots in $shots"
