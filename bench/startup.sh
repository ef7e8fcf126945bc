#!/usr/bin/env bash
# bench/startup.sh: a node's start with a store of ARTIFACTS artifacts (default 1,000,000 files
# of 256 bytes, built by the store_scale benchmark and kept under /tmp/bench-eviction, which
# bench/eviction.sh shares), in a swarm of two: node A opens that store and bootstraps to an
# empty node B. Measured RUNS times: seconds from the start until A answers HTTP, A's RSS then,
# seconds until A has announced its held artifacts to the DHT (its log says how many: at most
# the 100,000 most recently used), A's RSS after, and B's RSS after (the provider records it
# keeps). The same for an empty store beside it, for scale. Appends a Markdown report to $1.
#
#   bash bench/startup.sh REPORT.md     (~10 minutes the first time; about 5 GB under /tmp)
#
# Knobs: ARTIFACTS, RUNS=3, CAIRN_BIN (default target/release/cairn).
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/startup.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
B=/tmp/bench-eviction
ARTIFACTS=${ARTIFACTS:-1000000}
SIZE=256
RUNS=${RUNS:-3}
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
[ -x "$CAIRN" ] || { echo "no Cairn binary at $CAIRN (cargo build --release)" >&2; exit 1; }
trap lib_cleanup EXIT
mkdir -p "$B"
rm -rf "$B/logs" && mkdir -p "$B/logs"
if [ "$(cat "$B/pristine.count" 2>/dev/null)" != "$ARTIFACTS" ]; then
  log "building a store of $ARTIFACTS artifacts"
  rm -rf "$B/pristine" "$B/pristine.count" && mkdir -p "$B/pristine"
  (cd "$REPO" && CAIRN_BENCH_ARTIFACTS=$ARTIFACTS CAIRN_BENCH_SIZE=$SIZE \
    CAIRN_BENCH_BUILD_INTO="$B/pristine" cargo bench -q -p cairn-mirror --bench store_scale) \
    > "$B/logs/build.log" 2>&1 || { tail -n 20 "$B/logs/build.log" >&2; exit 1; }
  echo "$ARTIFACTS" > "$B/pristine.count"
fi

node() {  # node NAME DIR HTTP P2P [ARGS…]: start `cairn serve`; sets NODE_PID
  local name=$1 dir=$2 http=$3 p2p=$4; shift 4
  CAIRN_LOG=info "$CAIRN" serve --data-dir "$dir" --listen "127.0.0.1:$http" \
    --p2p-listen "/ip4/127.0.0.1/tcp/$p2p" --no-mdns "$@" \
    > "$B/logs/$name.out" 2> "$B/logs/$name.err" &
  NODE_PID=$!; PIDS+=("$NODE_PID")
}
declare -A UP RSS_UP ANN RSS_ANN RSS_B COUNT
for run in $(seq 1 "$RUNS"); do
  for store in empty full; do
    rm -rf "$B/b" "$B/a-empty"
    node b "$B/b" 7761 7861; BPID=$NODE_PID
    wait_for "$BPID" 30 grep -q 'cairn listening on' "$B/logs/b.out"
    bid=$("$CAIRN" id --data-dir "$B/b" | awk 'NR == 1')
    dir="$B/a-empty"
    if [ "$store" = full ]; then
      # The pristine store, its files hard-linked (nothing here writes them), its index copied.
      rm -rf "$B/a" && mkdir -p "$B/a/meta" "$B/a/tmp"
      cp -al "$B/pristine/blobs" "$B/a/blobs"
      cp "$B/pristine"/index.sqlite3* "$B/a/"
      dir="$B/a"
    fi
    t0=$(now)
    node a "$dir" 7762 7862 --bootstrap "/ip4/127.0.0.1/tcp/7861/p2p/$bid"; APID=$NODE_PID
    wait_for "$APID" 60 grep -q 'cairn listening on' "$B/logs/a.out"
    t1=$(now)
    RSS_UP[$store]="${RSS_UP[$store]:-} $(rss_mb "$APID")"
    wait_for "$APID" 600 grep -q 'announced [0-9]* held artifacts' "$B/logs/a.err"
    t2=$(now)
    UP[$store]="${UP[$store]:-} $(elapsed "$t0" "$t1")"
    ANN[$store]="${ANN[$store]:-} $(elapsed "$t0" "$t2")"
    RSS_ANN[$store]="${RSS_ANN[$store]:-} $(rss_mb "$APID")"
    RSS_B[$store]="${RSS_B[$store]:-} $(rss_mb "$BPID")"
    COUNT[$store]=$(grep -o 'announced [0-9]* held artifacts' "$B/logs/a.err" | tail -1 | awk '{print $2}')
    log "$store run $run: answers after $(elapsed "$t0" "$t1") s, announced ${COUNT[$store]} after $(elapsed "$t0" "$t2") s"
    stop_pid "$APID"; stop_pid "$BPID"; PIDS=()
  done
done

{
  echo "### Start-up with a large store"
  echo
  echo "\`RUNS=$RUNS bash bench/startup.sh REPORT.md\`. Machine: $(machine). Node A on a store of $ARTIFACTS artifacts (or an empty one) bootstraps to an empty node B, both on 127.0.0.1. Medians of $RUNS runs [every run]."
  echo
  echo "| A's store | s until HTTP answers | A's RSS MiB then | s until announced | artifacts announced | A's RSS MiB then | B's RSS MiB then |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for s in empty full; do
    echo "| $s | $(median ${UP[$s]}) [${UP[$s]# }] | $(median ${RSS_UP[$s]}) | $(median ${ANN[$s]}) [${ANN[$s]# }] | ${COUNT[$s]} | $(median ${RSS_ANN[$s]}) | $(median ${RSS_B[$s]}) |"
  done
  echo
} >> "$OUT"
log "report appended to $OUT"
