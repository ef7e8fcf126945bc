#!/usr/bin/env bash
# bench/auth.sh: what checking access tokens costs a hit. One Cairn store, holding a small
# (64 KiB) and a large (1 MiB) npm tarball and their packuments, fetched from
# bench/fake_upstream.py; served by `cairn serve` without tokens and with `--auth required`
# (each request presenting a Bearer token among 100 the node knows). wrk at c=1 and c=64
# (keep-alive), RUNS rounds interleaved. Appends a Markdown report to $1.
#
#   sudo bash bench/auth.sh REPORT.md     (after `cargo build --release`; ~5 min)
#
# Knobs: RUNS=3, WRK_SECS=5, CAIRN_BIN (default target/release/cairn).
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/auth.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
B=/tmp/bench-auth
RUNS=${RUNS:-3}
WRK_SECS=${WRK_SECS:-5}
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
FAKE_PORT=8099
[ -x "$CAIRN" ] || { echo "no Cairn binary at $CAIRN (cargo build --release)" >&2; exit 1; }
need_tools wrk wrk
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

serve() {  # serve LABEL PORT [ARGS…]
  local label=$1 port=$2; shift 2
  "$CAIRN" serve --data-dir "$B/data" --listen "127.0.0.1:$port" --no-p2p --metadata-ttl 1h \
    --npm-upstream "http://127.0.0.1:$FAKE_PORT/" "$@" \
    > "$B/logs/cairn-$label.out" 2> "$B/logs/cairn-$label.err" &
  CAIRN_PID=$!; PIDS+=("$CAIRN_PID")
  wait_for "$CAIRN_PID" 30 grep -q 'cairn listening on' "$B/logs/cairn-$label.out"
}
# Fill the store, and make the tokens (the one presented is the last of 100).
serve fill 7781
for path in $SMALL $LARGE $DOC; do curl -sf -o /dev/null "http://127.0.0.1:7781$path"; done
stop_pid "$CAIRN_PID"; PIDS=("${PIDS[0]}")
for i in $(seq 1 99); do "$CAIRN" token create "user$i" --data-dir "$B/data" > /dev/null 2>&1; done
TOKEN=$("$CAIRN" token create bench --data-dir "$B/data" 2>/dev/null)

declare -A WRPS WP99 WERR
for run in $(seq 1 "$RUNS"); do
  log "round $run/$RUNS"
  serve open 7781
  for c in 1 64; do
    run_wrk "open-doc-$c" "$c" "http://127.0.0.1:7781$DOC"
    run_wrk "open-small-$c" "$c" "http://127.0.0.1:7781$SMALL"
    run_wrk "open-large-$c" "$c" "http://127.0.0.1:7781$LARGE"
  done
  stop_pid "$CAIRN_PID"
  serve auth 7782 --auth required
  for c in 1 64; do
    run_wrk "auth-doc-$c" "$c" "http://127.0.0.1:7782$DOC" "Authorization: Bearer $TOKEN"
    run_wrk "auth-small-$c" "$c" "http://127.0.0.1:7782$SMALL" "Authorization: Bearer $TOKEN"
    run_wrk "auth-large-$c" "$c" "http://127.0.0.1:7782$LARGE" "Authorization: Bearer $TOKEN"
  done
  stop_pid "$CAIRN_PID"
done

{
  echo "### What checking tokens costs a hit"
  echo
  echo "\`RUNS=$RUNS WRK_SECS=$WRK_SECS sudo bash bench/auth.sh REPORT.md\`. Machine: $(machine). A cached packument (doc), an npm tarball of 64 KiB (small) and one of 1 MiB (large), served without tokens and with \`--auth required\` (a Bearer token among 100); wrk keep-alive, req/s (p99 ms), medians of $RUNS rounds."
  echo
  echo "| resource, connections | no tokens | tokens required | required / none |"
  echo "|---|---:|---:|---:|"
  for f in doc small large; do
    for c in 1 64; do
      o=$(median ${WRPS[open-$f-$c]}); a=$(median ${WRPS[auth-$f-$c]})
      echo "| $f, c=$c | $o ($(median ${WP99[open-$f-$c]})) | $a ($(median ${WP99[auth-$f-$c]})) | $(ratio "$a" "$o") |"
    done
  done
  echo
  echo "Errors: $(for k in "${!WERR[@]}"; do [ "${WERR[$k]}" != 0 ] && echo -n "$k ${WERR[$k]}; "; done; echo none beyond those listed)."
  echo
} >> "$OUT"
log "report appended to $OUT"
