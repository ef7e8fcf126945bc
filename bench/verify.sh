#!/usr/bin/env bash
# bench/verify.sh: `cairn verify` over a store of GIB GiB (files of 4 MiB, so every DAG has an
# inner node; built by the store_scale benchmark), its time and peak memory, cold (page cache
# dropped) and warm; then hit latency while a verify runs beside the node, against the same
# hits on the idle node. Hits: wrk (c=64, WRK_SECS) on the trustless gateway's raw block of the
# newest artifact's first leaf, read from the store. The rounds alternate idle and verifying;
# slices during a verify count only while it runs. Appends a Markdown report to $1.
#
#   sudo bash bench/verify.sh REPORT.md     (~15 minutes; GIB GiB under /tmp)
#
# Knobs: GIB=10, RUNS=3, WRK_SECS=4, SLICES=4, CAIRN_BIN (default target/release/cairn).
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/verify.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
B=/tmp/bench-verify
GIB=${GIB:-10}
SIZE=$((4 << 20))
ARTIFACTS=$((GIB * 256))
RUNS=${RUNS:-3}
WRK_SECS=${WRK_SECS:-4}
SLICES=${SLICES:-4}
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
PORT=7742

# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
trap lib_cleanup EXIT
[ -x "$CAIRN" ] || { log "no Cairn binary at $CAIRN (cargo build --release)"; exit 1; }
need_tools wrk wrk
mkdir -p "$B"
rm -rf "$B/logs" && mkdir -p "$B/logs"
if [ "$(cat "$B/data.count" 2>/dev/null)" != "$ARTIFACTS" ]; then
  log "building a store of $ARTIFACTS artifacts of 4 MiB"
  rm -rf "$B/data" "$B/data.count" && mkdir -p "$B/data"
  (cd "$REPO" && CAIRN_BENCH_ARTIFACTS=$ARTIFACTS CAIRN_BENCH_SIZE=$SIZE \
    CAIRN_BENCH_BUILD_INTO="$B/data" cargo bench -q -p cairn-mirror --bench store_scale) \
    > "$B/logs/build.log" 2>&1 || { tail -n 20 "$B/logs/build.log" >&2; exit 1; }
  echo "$ARTIFACTS" > "$B/data.count"
fi
# The newest artifact's first leaf: its bytes are its number (little-endian u64) over and over.
CID=$(python3 -c '
import base64, hashlib, struct, sys
n = int(sys.argv[1]) - 1
data = (struct.pack("<Q", n) * (1 << 17))
raw = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
print("b" + base64.b32encode(raw).decode().lower().rstrip("="))' "$ARTIFACTS")
URL="http://127.0.0.1:$PORT/ipfs/$CID"
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || log "cannot drop the page cache (not root?)"; }

# 1. verify alone: no node, the store opened by verify itself.
declare -A SECS RSS
for round in $(seq 1 "$RUNS"); do
  for temp in cold warm; do
    [ "$temp" = cold ] && drop_caches
    /usr/bin/time -f '%e %M' -o "$B/logs/time" "$CAIRN" verify --data-dir "$B/data" \
      --listen 127.0.0.1:1 --json > "$B/logs/verify-$temp.json" 2> "$B/logs/verify-$temp.err" ||
      { tail -n 5 "$B/logs/verify-$temp.err" >&2; exit 1; }
    read -r secs kb < "$B/logs/time"
    SECS[$temp]="${SECS[$temp]:-} $secs"
    RSS[$temp]="${RSS[$temp]:-} $(awk -v k="$kb" 'BEGIN{printf "%.0f", k/1024}')"
    log "verify $temp: $secs s, $kb KiB peak"
  done
done

# 2. hits on the node, idle and while a verify runs beside it.
declare -A WRPS WP99 WERR P50
run() {
  run_wrk "$1" 64 "$URL" "Accept: application/vnd.ipld.raw"
  P50[$1]="${P50[$1]:-} $(to_ms "$(awk '$1=="50%"{v=$2} END{print v}' "$B/logs/wrk.log")")"
}
CAIRN=$CAIRN start_cairn node "$B/data" --listen "127.0.0.1:$PORT" --no-p2p
wait_for "$CAIRN_PID" 30 curl -sf -o /dev/null -H 'Accept: application/vnd.ipld.raw' "$URL"
for round in $(seq 1 "$RUNS"); do
  log "round $round/$RUNS: idle"
  for _ in $(seq 1 "$SLICES"); do run idle; done
  log "round $round/$RUNS: verifying"
  drop_caches
  "$CAIRN" verify --data-dir "$B/data" --listen "127.0.0.1:$PORT" > "$B/logs/verify-beside.out" 2>&1 &
  VPID=$!
  while kill -0 "$VPID" 2>/dev/null; do
    run verifying-slice
    kill -0 "$VPID" 2>/dev/null || break
    WRPS[verifying]="${WRPS[verifying]:-} ${WRPS[verifying-slice]##* }"
    WP99[verifying]="${WP99[verifying]:-} ${WP99[verifying-slice]##* }"
    P50[verifying]="${P50[verifying]:-} ${P50[verifying-slice]##* }"
    WERR[verifying]=$(( ${WERR[verifying]:-0} + ${WERR[verifying-slice]:-0} ))
    WERR[verifying-slice]=0
  done
  wait "$VPID" || { cat "$B/logs/verify-beside.out" >&2; exit 1; }
  tail -1 "$B/logs/verify-beside.out" >&2
done
stop_pid "$CAIRN_PID"; PIDS=()

{
  echo "### Verify"
  echo
  echo "\`GIB=$GIB RUNS=$RUNS WRK_SECS=$WRK_SECS SLICES=$SLICES sudo bash bench/verify.sh REPORT.md\`. Machine: $(machine). A store of $ARTIFACTS artifacts of 4 MiB ($GIB GiB, each with a DAG of 4 leaves under one inner node)."
  echo
  echo "\`cairn verify\` alone (no node), medians of $RUNS runs [every run]; cold: page cache dropped first."
  echo
  echo "| page cache | seconds | GiB/s | peak RSS MiB |"
  echo "|---|---:|---:|---:|"
  for t in cold warm; do
    s=$(median ${SECS[$t]})
    echo "| $t | $s [${SECS[$t]# }] | $(awk -v g="$GIB" -v s="$s" 'BEGIN{printf "%.2f", g/s}') | $(median ${RSS[$t]}) [${RSS[$t]# }] |"
  done
  echo
  echo "Hits (wrk c=64 on \`/ipfs/CID\`, a raw block read from the store, slices of $WRK_SECS s) on the idle node ($SLICES slices a round) and while \`cairn verify\` runs beside it from a cold page cache (slices while it runs; the one it ends in is left out). Medians over all slices of $RUNS rounds [every slice]."
  echo
  echo "| node | req/s | p50 ms | p99 ms |"
  echo "|---|---:|---:|---:|"
  for k in idle verifying; do
    echo "| $k | $(median ${WRPS[$k]}) [${WRPS[$k]# }] | $(median ${P50[$k]}) [${P50[$k]# }] | $(median ${WP99[$k]}) [${WP99[$k]# }] |"
  done
  echo
  echo "Verifying / idle: req/s $(ratio "$(median ${WRPS[verifying]})" "$(median ${WRPS[idle]})"), p50 $(ratio "$(median ${P50[verifying]})" "$(median ${P50[idle]})"), p99 $(ratio "$(median ${WP99[verifying]})" "$(median ${WP99[idle]})"). Errors: idle ${WERR[idle]:-0}, verifying ${WERR[verifying]:-0}."
  echo
} >> "$OUT"
log "report appended to $OUT"
