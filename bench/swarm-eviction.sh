#!/usr/bin/env bash
# bench/swarm-eviction.sh: the swarm as one cache. Three `cairn serve` nodes, each with a size
# limit of Q (QFILES tarballs of 64 KiB), and a working set of 2Q (2×QFILES packages from
# bench/fake_upstream.py) asked for by their clients: REQUESTS requests per node, uniformly at
# random over the working set, the nodes taking turns. Then: how many packages of the working
# set some node still holds, and how many tarballs upstream sent during the churn. Once as a
# private swarm (swarm key: eviction asks the peers and lets go first of what they hold), once
# as an open one (no key: plain per-node LRU), RUNS times each, alternating, with the same
# request sequences. Appends a Markdown report to $1.
#
#   bash bench/swarm-eviction.sh REPORT.md     (after `cargo build --release`; ~5 min)
#
# Knobs: QFILES=40, REQUESTS=400, RUNS=3, CAIRN_BIN (default target/release/cairn).
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/swarm-eviction.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
B=/tmp/bench-swarm-eviction
QFILES=${QFILES:-40}
WORKING=$((2 * QFILES))
REQUESTS=${REQUESTS:-400}
RUNS=${RUNS:-3}
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
FAKE_PORT=8097
[ -x "$CAIRN" ] || { echo "no Cairn binary at $CAIRN (cargo build --release)" >&2; exit 1; }
rm -rf "$B" && mkdir -p "$B/logs"
trap lib_cleanup EXIT
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

hex=$(head -c32 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '/key/swarm/psk/1.0.0/\n/base16/\n%s\n' "$hex" > "$B/swarm.key"

log "fake upstream: $WORKING packages of 64 KiB"
python3 "$HERE/fake_upstream.py" --port $FAKE_PORT --dir "$B/huge" --size-mib 1 --small "$WORKING" \
  > "$B/logs/fake.out" 2> "$B/logs/fake.err" &
PIDS+=("$!")
for _ in $(seq 600); do grep -q listening "$B/logs/fake.out" 2>/dev/null && break; sleep 0.2; done
UP="http://127.0.0.1:$FAKE_PORT"
# The tarball's size and each package's flat CID (from its packument's sha512 integrity).
python3 - "$UP" "$WORKING" > "$B/flats" <<'PY'
import base64, json, sys, urllib.request
up, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    doc = json.load(urllib.request.urlopen(f"{up}/small{i}"))
    digest = base64.b64decode(doc["versions"]["1.0.0"]["dist"]["integrity"].split("-", 1)[1])
    raw = bytes([0x01, 0x55, 0x13, 0x40]) + digest
    print(f"small{i} b" + base64.b32encode(raw).decode().lower().rstrip("="))
PY
SIZE=$(curl -sf "$UP/small0/-/small0-1.0.0.tgz" | wc -c)
LIMIT=$((QFILES * SIZE))
upstream_requests() { curl -sf "$UP/-/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tarball_requests"])'; }

NEXT_PORT=7850
start_node() {  # start_node NAME [ARGS…]: sets NODE_URL, NODE_PID, NODE_ADDR
  local name=$1; shift
  local http=$NEXT_PORT p2p=$((NEXT_PORT + 100)) id
  NEXT_PORT=$((NEXT_PORT + 1))
  id=$("$CAIRN" id --data-dir "$B/$name" 2> /dev/null | awk 'NR == 1')  # (it is not running yet)
  "$CAIRN" serve --listen "127.0.0.1:$http" --data-dir "$B/$name" --max-size "$LIMIT" \
    --p2p-listen "/ip4/127.0.0.1/tcp/$p2p" --no-mdns --npm-upstream "$UP/" \
    --cargo-upstream http://127.0.0.1:9/ --pypi-upstream http://127.0.0.1:9/ \
    "$@" > "$B/logs/$name.out" 2> "$B/logs/$name.err" &
  NODE_PID=$!; PIDS+=("$NODE_PID")
  for _ in $(seq 200); do grep -q 'listening' "$B/logs/$name.out" 2>/dev/null && break; sleep 0.05; done
  grep -q 'listening' "$B/logs/$name.out" || { cat "$B/logs/$name.err" >&2; exit 1; }
  NODE_URL="http://127.0.0.1:$http"
  NODE_ADDR="/ip4/127.0.0.1/tcp/$p2p/p2p/$id"
}
peers_of() { curl -sf "$1/api/v1/peers" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["peers"]))'; }
wait_peers() {
  for _ in $(seq 300); do [ "$(peers_of "$1")" -ge "$2" ] && return 0; sleep 0.1; done
  echo "node $1 sees fewer than $2 peers" >&2; return 1
}
metric() { curl -sf "$1/metrics" | awk -v m="$2" '$1 ~ "^"m {s+=$NF} END{printf "%.0f\n", s}'; }

declare -A HELD UPREQ SHARED LAST
one_run() {  # one_run MODE RUN: private or open
  local mode=$1 run=$2 key=() urls=() pids=() dirs=()
  [ "$mode" = private ] && key=(--swarm-key "$B/swarm.key")
  start_node "$mode-$run-a" "${key[@]}"; urls+=("$NODE_URL"); pids+=("$NODE_PID"); dirs+=("$B/$mode-$run-a")
  local first=$NODE_ADDR
  for n in b c; do
    start_node "$mode-$run-$n" "${key[@]}" --bootstrap "$first"
    urls+=("$NODE_URL"); pids+=("$NODE_PID"); dirs+=("$B/$mode-$run-$n")
  done
  for u in "${urls[@]}"; do wait_peers "$u" 2; done
  local before; before=$(upstream_requests)
  # The same request sequence for both modes of a run.
  python3 -c 'import random, sys
random.seed(int(sys.argv[1]))
for _ in range(int(sys.argv[2]) * 3):
    print(random.randrange(int(sys.argv[3])))' "$run" "$REQUESTS" "$WORKING" > "$B/requests-$run"
  local k=0
  while read -r i; do
    curl -sf -o /dev/null "${urls[$((k % 3))]}/npm/small$i/-/small$i-1.0.0.tgz" ||
      log "request small$i through node $((k % 3)) failed"
    k=$((k + 1))
  done < "$B/requests-$run"
  sleep 3   # the last eviction passes
  local held=0
  while read -r _name flat; do
    for d in "${dirs[@]}"; do
      if [ -f "$d/blobs/${flat: -2}/$flat" ]; then held=$((held + 1)); break; fi
    done
  done < "$B/flats"
  local shared=0 last=0
  for u in "${urls[@]}"; do
    shared=$((shared + $(metric "$u" cairn_evicted_shared_files_total)))
    last=$((last + $(metric "$u" cairn_evicted_last_copies_total)))
  done
  HELD[$mode]="${HELD[$mode]:-} $held"
  UPREQ[$mode]="${UPREQ[$mode]:-} $(( $(upstream_requests) - before ))"
  SHARED[$mode]="${SHARED[$mode]:-} $shared"
  LAST[$mode]="${LAST[$mode]:-} $last"
  log "$mode run $run: $held of $WORKING held in the swarm, $(( $(upstream_requests) - before )) upstream fetches, evicted shared $shared, last copies $last"
  for p in "${pids[@]}"; do stop_pid "$p"; done
  PIDS=("${PIDS[0]}")
}
for run in $(seq 1 "$RUNS"); do
  one_run open "$run"
  one_run private "$run"
done

{
  echo "### The swarm as one cache"
  echo
  echo "\`QFILES=$QFILES REQUESTS=$REQUESTS RUNS=$RUNS bash bench/swarm-eviction.sh REPORT.md\`. Machine: $(machine). Three nodes on 127.0.0.1, each with \`--max-size\` $QFILES tarballs of $SIZE bytes (Q); a working set of $WORKING packages (2Q); $REQUESTS requests per node, uniformly at random over the working set, the nodes taking turns (the same sequences in both modes). Held: packages of the working set some node holds at the end. Medians of $RUNS runs [every run]."
  echo
  echo "| swarm | held of $WORKING | upstream fetches | evicted while a peer held it | evicted as a last copy |"
  echo "|---|---:|---:|---:|---:|"
  for m in open private; do
    echo "| $m | $(median ${HELD[$m]}) [${HELD[$m]# }] | $(median ${UPREQ[$m]}) [${UPREQ[$m]# }] | $(median ${SHARED[$m]}) | $(median ${LAST[$m]}) |"
  done
  echo
} >> "$OUT"
log "report appended to $OUT"
