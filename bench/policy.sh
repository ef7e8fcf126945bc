#!/usr/bin/env bash
# bench/policy.sh: what a supply-chain policy costs a hit on a large document. One Cairn store
# holding `many`, an npm packument of MANY versions (about 6 KiB each, ~20 MB at 3000), and
# `manyproj`, a PyPI page of MANY files, both from bench/fake_upstream.py, published an hour
# apart up to now; served by `cairn serve` without a policy and with `--min-age 7d` (which
# leaves out the last week's versions: documents are rendered filtered, once, and cached).
# wrk at c=1 and c=16 (keep-alive, gzip accepted as clients do), RUNS rounds interleaved.
# Appends a Markdown report to $1.
#
#   sudo bash bench/policy.sh REPORT.md     (after `cargo build --release`; ~4 min)
#
# Knobs: RUNS=3, WRK_SECS=5, MANY=3000, CAIRN_BIN (default target/release/cairn).
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/policy.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
B=/tmp/bench-policy
RUNS=${RUNS:-3}
WRK_SECS=${WRK_SECS:-5}
MANY=${MANY:-3000}
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
FAKE_PORT=8098
[ -x "$CAIRN" ] || { echo "no Cairn binary at $CAIRN (cargo build --release)" >&2; exit 1; }
need_tools wrk wrk
rm -rf "$B" && mkdir -p "$B/logs"
trap lib_cleanup EXIT
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

python3 "$HERE/fake_upstream.py" --port $FAKE_PORT --dir "$B/huge" --size-mib 1 --small 1 \
  --many "$MANY" > "$B/logs/fake.out" 2> "$B/logs/fake.err" &
PIDS+=("$!")
for _ in $(seq 600); do grep -q listening "$B/logs/fake.out" 2>/dev/null && break; sleep 0.2; done
NPM_DOC=/npm/many
PYPI_DOC=/pypi/simple/manyproj/
JSON="Accept: application/vnd.pypi.simple.v1+json|Accept-Encoding: gzip"

serve() {  # serve LABEL PORT [ARGS…]
  local label=$1 port=$2; shift 2
  "$CAIRN" serve --data-dir "$B/data" --listen "127.0.0.1:$port" --no-p2p --metadata-ttl 1h \
    --npm-upstream "http://127.0.0.1:$FAKE_PORT/" \
    --pypi-upstream "http://127.0.0.1:$FAKE_PORT/simple/" "$@" \
    > "$B/logs/cairn-$label.out" 2> "$B/logs/cairn-$label.err" &
  CAIRN_PID=$!; PIDS+=("$CAIRN_PID")
  wait_for "$CAIRN_PID" 30 grep -q 'cairn listening on' "$B/logs/cairn-$label.out"
}
serve fill 7783
NPM_BYTES=$(curl -sf "http://127.0.0.1:7783$NPM_DOC" | wc -c)
PYPI_BYTES=$(curl -sf -H "Accept: application/vnd.pypi.simple.v1+json" "http://127.0.0.1:7783$PYPI_DOC" | wc -c)
stop_pid "$CAIRN_PID"; PIDS=("${PIDS[0]}")

declare -A WRPS WP99 WERR
for run in $(seq 1 "$RUNS"); do
  log "round $run/$RUNS"
  for mode in none policy; do
    if [ "$mode" = policy ]; then serve "$mode" 7784 --min-age 7d; else serve "$mode" 7784; fi
    # The first request renders (and, with the policy, filters); wrk measures the hits.
    curl -sf -o /dev/null -H "Accept-Encoding: gzip" "http://127.0.0.1:7784$NPM_DOC"
    curl -sf -o /dev/null -H "${JSON%%|*}" -H "Accept-Encoding: gzip" "http://127.0.0.1:7784$PYPI_DOC"
    for c in 1 16; do
      run_wrk "$mode-npm-$c" "$c" "http://127.0.0.1:7784$NPM_DOC" "Accept-Encoding: gzip"
      run_wrk "$mode-pypi-$c" "$c" "http://127.0.0.1:7784$PYPI_DOC" "$JSON"
    done
    stop_pid "$CAIRN_PID"; PIDS=("${PIDS[0]}")
  done
done
FILTERED=$(serve check 7785 --min-age 7d; curl -sf "http://127.0.0.1:7785$NPM_DOC" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["versions"]))'; stop_pid "$CAIRN_PID")

{
  echo "### What a policy costs a hit on a large document"
  echo
  echo "\`RUNS=$RUNS WRK_SECS=$WRK_SECS MANY=$MANY sudo bash bench/policy.sh REPORT.md\`. Machine: $(machine). The packument of \`many\` ($MANY versions, $(human_bytes "$NPM_BYTES") rendered) and the PyPI page of \`manyproj\` ($MANY files, $(human_bytes "$PYPI_BYTES") as JSON), published an hour apart up to now; served without a policy and with \`--min-age 7d\` (the packument then keeps $FILTERED of $MANY versions). wrk keep-alive with \`Accept-Encoding: gzip\`, req/s (p99 ms), medians of $RUNS rounds."
  echo
  echo "| document, connections | no policy | min-age 7d | policy / none |"
  echo "|---|---:|---:|---:|"
  for f in npm pypi; do
    for c in 1 16; do
      o=$(median ${WRPS[none-$f-$c]}); p=$(median ${WRPS[policy-$f-$c]})
      echo "| $f, c=$c | $o ($(median ${WP99[none-$f-$c]})) | $p ($(median ${WP99[policy-$f-$c]})) | $(ratio "$p" "$o") |"
    done
  done
  echo
  echo "Errors: $(for k in "${!WERR[@]}"; do [ "${WERR[$k]}" != 0 ] && echo -n "$k ${WERR[$k]}; "; done; echo none beyond those listed)."
  echo
} >> "$OUT"
log "report appended to $OUT"
