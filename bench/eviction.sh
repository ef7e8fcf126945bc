#!/usr/bin/env bash
# bench/eviction.sh: hit latency while an eviction pass runs, against the same hits on an idle
# node. A store of ARTIFACTS artifacts (default 1,000,000 files of 256 bytes, built by the
# store_scale benchmark) is served by `cairn serve --no-p2p`; wrk (c=64, WRK_SECS) asks the
# trustless gateway for the most recently used artifact's block (a hit read from the store), in
# slices of WRK_SECS: SLICES of them with no size limit (idle), then, right after a start with
# `--max-size` just under what is held, whose first upkeep evicts a tenth of the store (a pass of
# tens of seconds at this size), slices for as long as the pass runs. The rounds alternate idle
# and evicting. Appends a Markdown report to $1.
#
#   sudo bash bench/eviction.sh REPORT.md     (~10 minutes; about 5 GB under /tmp)
#
# Knobs: ARTIFACTS, RUNS=3, WRK_SECS=4, SLICES=5, CAIRN_BIN (default target/release/cairn).
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/eviction.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
B=/tmp/bench-eviction
ARTIFACTS=${ARTIFACTS:-1000000}
SIZE=256
RUNS=${RUNS:-3}
WRK_SECS=${WRK_SECS:-4}
SLICES=${SLICES:-5}   # idle wrk slices per round
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
PORT=7741

# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
trap lib_cleanup EXIT
[ -x "$CAIRN" ] || { log "no Cairn binary at $CAIRN (cargo build --release)"; exit 1; }
need_tools wrk wrk
mkdir -p "$B"
rm -rf "$B/logs" "$B/data" && mkdir -p "$B/logs"
if [ "$(cat "$B/pristine.count" 2>/dev/null)" != "$ARTIFACTS" ]; then
  log "building a store of $ARTIFACTS artifacts"
  rm -rf "$B/pristine" "$B/pristine.count" && mkdir -p "$B/pristine"
  (cd "$REPO" && CAIRN_BENCH_ARTIFACTS=$ARTIFACTS CAIRN_BENCH_SIZE=$SIZE \
    CAIRN_BENCH_BUILD_INTO="$B/pristine" cargo bench -q -p cairn-mirror --bench store_scale) \
    > "$B/logs/build.log" 2>&1 || { tail -n 20 "$B/logs/build.log" >&2; exit 1; }
  echo "$ARTIFACTS" > "$B/pristine.count"
fi
HELD=$((ARTIFACTS * SIZE))
LIMIT=$((HELD - 1))
# The newest artifact: its bytes are its number (little-endian u64) over and over; its block is
# a raw leaf, so its CID is the raw CID of their SHA-256.
CID=$(python3 -c '
import base64, hashlib, struct, sys
n, size = int(sys.argv[1]) - 1, int(sys.argv[2])
data = (struct.pack("<Q", n) * (size // 8 + 1))[:size]
raw = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
print("b" + base64.b32encode(raw).decode().lower().rstrip("="))' "$ARTIFACTS" "$SIZE")
URL="http://127.0.0.1:$PORT/ipfs/$CID"

declare -A WRPS WP99 WERR P50
run() {  # run KEY: one wrk round on $URL, p50 noted too
  run_wrk "$1" 64 "$URL" "Accept: application/vnd.ipld.raw"
  P50[$1]="${P50[$1]:-} $(to_ms "$(awk '$1=="50%"{v=$2} END{print v}' "$B/logs/wrk.log")")"
}
fresh() {  # a copy of the pristine store (eviction changes it): the files hard-linked (eviction
           # only unlinks them), the index copied
  rm -rf "$B/data" && mkdir -p "$B/data/meta" "$B/data/tmp"
  cp -al "$B/pristine/blobs" "$B/data/blobs"
  cp "$B/pristine"/index.sqlite3* "$B/data/"
}
PASS_SECS=()
for round in $(seq 1 "$RUNS"); do
  log "round $round/$RUNS: idle"
  fresh
  CAIRN=$CAIRN start_cairn idle "$B/data" --listen "127.0.0.1:$PORT" --no-p2p
  wait_for "$CAIRN_PID" 30 curl -sf -o /dev/null -H 'Accept: application/vnd.ipld.raw' "$URL"
  for _ in $(seq 1 "$SLICES"); do run idle; done
  stop_pid "$CAIRN_PID"; PIDS=()

  log "round $round/$RUNS: evicting"
  fresh
  CAIRN=$CAIRN start_cairn evicting "$B/data" --listen "127.0.0.1:$PORT" --no-p2p --max-size "$LIMIT"
  wait_for "$CAIRN_PID" 30 curl -sf -o /dev/null -H 'Accept: application/vnd.ipld.raw' "$URL"
  t0=$(now)
  # wrk slices for as long as the pass runs (counting, choosing, dropping rows, deleting
  # files); a slice that ends after the pass is not counted.
  while ! grep -q 'evicted least recently used artifacts' "$B/logs/cairn-evicting.err"; do
    run evicting-slice
    if grep -q 'evicted least recently used artifacts' "$B/logs/cairn-evicting.err"; then
      break
    fi
    WRPS[evicting]="${WRPS[evicting]:-} ${WRPS[evicting-slice]##* }"
    WP99[evicting]="${WP99[evicting]:-} ${WP99[evicting-slice]##* }"
    P50[evicting]="${P50[evicting]:-} ${P50[evicting-slice]##* }"
    WERR[evicting]=$(( ${WERR[evicting]:-0} + ${WERR[evicting-slice]:-0} ))
    WERR[evicting-slice]=0
  done
  t1=$(now)
  PASS_SECS+=("$(elapsed "$t0" "$t1")")
  grep 'evicted least recently used artifacts' "$B/logs/cairn-evicting.err" | tail -1 >&2
  stop_pid "$CAIRN_PID"; PIDS=()
done

{
  echo "### Hits while eviction runs"
  echo
  echo "\`RUNS=$RUNS WRK_SECS=$WRK_SECS SLICES=$SLICES sudo bash bench/eviction.sh REPORT.md\`. Machine: $(machine). A store of $ARTIFACTS artifacts of $SIZE bytes; wrk c=64 on \`/ipfs/CID\` (raw block) of the newest artifact, in slices of $WRK_SECS s. Idle: \`serve\` with no limit, $SLICES slices a round. Evicting: \`serve --max-size $LIMIT\`, whose first upkeep evicts a tenth of the store; slices from the node's start for as long as the pass runs (a slice the pass ended in is left out). Medians over all slices of $RUNS rounds (every slice in brackets)."
  echo
  echo "| node | req/s | p50 ms | p99 ms |"
  echo "|---|---:|---:|---:|"
  for k in idle evicting; do
    echo "| $k | $(median ${WRPS[$k]}) [${WRPS[$k]# }] | $(median ${P50[$k]}) [${P50[$k]# }] | $(median ${WP99[$k]}) [${WP99[$k]# }] |"
  done
  echo
  echo "Evicting / idle: req/s $(ratio "$(median ${WRPS[evicting]})" "$(median ${WRPS[idle]})"), p99 $(ratio "$(median ${WP99[evicting]})" "$(median ${WP99[idle]})"). Seconds from the node's start until the pass ended, per round: ${PASS_SECS[*]}. Errors: idle ${WERR[idle]:-0}, evicting ${WERR[evicting]:-0}."
  echo
} >> "$OUT"
log "report appended to $OUT"
