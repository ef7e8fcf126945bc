#!/usr/bin/env bash
# bench/dashboard.sh: what an open dashboard costs the hot path. One Cairn store holding a
# packument, a 64 KiB and a 1 MiB npm tarball (from bench/fake_upstream.py), served by one
# node; wrk at c=1 and c=64 (keep-alive) with no browser, then with headless Chromium (Debian's)
# showing the dashboard polling every second (`/?refresh=1`, six API calls a second; the page's
# default is every 3 s), RUNS rounds interleaved. The browser runs on the same two cores as wrk
# and the node: the second column pays for Chromium's own CPU too, so it is an upper bound of
# what the page costs the node. Appends a Markdown report to $1.
#
#   sudo bash bench/dashboard.sh REPORT.md     (after `cargo build --release`; ~5 min)
#
# First the node's own CPU while idle for IDLE_SECS with the page closed, then open: what
# answering the page's polls costs it, apart from the browser.
#
# Knobs: RUNS=3, WRK_SECS=5, IDLE_SECS=30, CAIRN_BIN (default target/release/cairn).
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/dashboard.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
B=/tmp/bench-dashboard
RUNS=${RUNS:-3}
WRK_SECS=${WRK_SECS:-5}
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
FAKE_PORT=8098
PORT=7783
[ -x "$CAIRN" ] || { echo "no Cairn binary at $CAIRN (cargo build --release)" >&2; exit 1; }
need_tools wrk wrk
need_tools chromium chromium
rm -rf "$B" && mkdir -p "$B/logs"
trap lib_cleanup EXIT
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

python3 "$HERE/fake_upstream.py" --port $FAKE_PORT --dir "$B/huge" --size-mib 1 --small 1 \
  > "$B/logs/fake.out" 2> "$B/logs/fake.err" &
PIDS+=("$!")
for _ in $(seq 600); do grep -q listening "$B/logs/fake.out" 2>/dev/null && break; sleep 0.2; done
SMALL=/npm/small0/-/small0-1.0.0.tgz
LARGE=/npm/huge/-/huge-1.0.0.tgz
DOC=/npm/small0

"$CAIRN" serve --data-dir "$B/data" --listen "127.0.0.1:$PORT" --no-p2p --metadata-ttl 1h \
  --npm-upstream "http://127.0.0.1:$FAKE_PORT/" \
  > "$B/logs/cairn.out" 2> "$B/logs/cairn.err" &
CAIRN_PID=$!; PIDS+=("$CAIRN_PID")
wait_for "$CAIRN_PID" 30 grep -q 'cairn listening on' "$B/logs/cairn.out"
for path in $SMALL $LARGE $DOC; do curl -sf -o /dev/null "http://127.0.0.1:$PORT$path"; done

api_calls() {  # the dashboard's API requests the node has answered so far
  curl -sf "http://127.0.0.1:$PORT/metrics" \
    | awk '/^cairn_http_requests_total\{route="(status|traffic|upstreams|peers|store|refusals)"/{s+=$2} END{print s+0}'
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # the node's user + system CPU
open_browser() {  # open_browser LABEL: Chromium on the dashboard, polling every second
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$B/chromium-$1" --remote-debugging-port=0 \
    "http://127.0.0.1:$PORT/?refresh=1" > "$B/logs/chromium-$1.out" 2>&1 &
  BROWSER_PID=$!; PIDS+=("$BROWSER_PID")
}

# The node's own CPU while idle, with the page closed and open (no wrk): what answering the
# page's polls costs it, apart from the browser's CPU.
HZ=$(getconf CLK_TCK)
IDLE_SECS=${IDLE_SECS:-30}
t0=$(cpu_ticks "$CAIRN_PID"); sleep "$IDLE_SECS"; t1=$(cpu_ticks "$CAIRN_PID")
IDLE_CLOSED=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" -v s="$IDLE_SECS" 'BEGIN{printf "%.2f", 100*(b-a)/hz/s}')
open_browser idle; sleep 3
c0=$(api_calls); t0=$(cpu_ticks "$CAIRN_PID"); sleep "$IDLE_SECS"; t1=$(cpu_ticks "$CAIRN_PID"); c1=$(api_calls)
IDLE_OPEN=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" -v s="$IDLE_SECS" 'BEGIN{printf "%.2f", 100*(b-a)/hz/s}')
IDLE_CALLS=$(( c1 - c0 ))
stop_pid "$BROWSER_PID"; BROWSER_PID=
log "idle: node CPU ${IDLE_CLOSED}% closed, ${IDLE_OPEN}% open ($IDLE_CALLS API calls in ${IDLE_SECS} s)"

declare -A WRPS WP99 WERR
BROWSER_PID=
for run in $(seq 1 "$RUNS"); do
  log "round $run/$RUNS"
  for mode in closed open; do
    if [ "$mode" = open ]; then
      open_browser "$run"
      before=$(api_calls); sleep 5
      polled=$(( $(api_calls) - before ))
      [ "$polled" -ge 12 ] || { echo "the dashboard made $polled API calls in 5 s: is it open?" >&2; exit 1; }
      log "dashboard open: $polled API calls in 5 s"
    fi
    for c in 1 64; do
      run_wrk "$mode-doc-$c" "$c" "http://127.0.0.1:$PORT$DOC"
      run_wrk "$mode-small-$c" "$c" "http://127.0.0.1:$PORT$SMALL"
      run_wrk "$mode-large-$c" "$c" "http://127.0.0.1:$PORT$LARGE"
    done
    if [ "$mode" = open ]; then stop_pid "$BROWSER_PID"; BROWSER_PID=; fi
  done
done

{
  echo "### What an open dashboard costs a hit"
  echo
  echo "\`RUNS=$RUNS WRK_SECS=$WRK_SECS sudo bash bench/dashboard.sh REPORT.md\`. Machine: $(machine). A cached packument (doc), an npm tarball of 64 KiB (small) and one of 1 MiB (large), with no browser and with headless Chromium showing the dashboard polling every second (on the same cores); wrk keep-alive, req/s (p99 ms), medians of $RUNS rounds."
  echo
  echo "| resource, connections | no dashboard | dashboard open | open / none |"
  echo "|---|---:|---:|---:|"
  for f in doc small large; do
    for c in 1 64; do
      o=$(median ${WRPS[closed-$f-$c]}); a=$(median ${WRPS[open-$f-$c]})
      echo "| $f, c=$c | $o ($(median ${WP99[closed-$f-$c]})) | $a ($(median ${WP99[open-$f-$c]})) | $(ratio "$a" "$o") |"
    done
  done
  echo
  echo "The node idle for ${IDLE_SECS} s (no wrk): ${IDLE_CLOSED}% of a core with no page open, ${IDLE_OPEN}% with the page open ($IDLE_CALLS API calls answered)."
  echo
  echo "Errors: $(for k in "${!WERR[@]}"; do [ "${WERR[$k]}" != 0 ] && echo -n "$k ${WERR[$k]}; "; done; echo none beyond those listed)."
  echo
} >> "$OUT"
log "report appended to $OUT"
