#!/usr/bin/env bash
# bench/p2p.sh: the swarm. In one run, on loopback, with `cairn serve` nodes sharing a swarm key:
#   a. a SIZE_MIB (default 1024) MiB artifact fetched by a node with no upstream (--offline)
#      from 1 peer and from 3 peers, against raw TCP throughput between the same endpoints
#      (a sendfile of the same file to a reader on 127.0.0.1); goal ≥ 0.8× raw;
#   b. 8 nodes asking for the same uncached artifact at once: bytes the upstream sent in total
#      (goal ≤ 1.1× the file) and the slowest node's time against one node alone (goal ≤ 6× on one 2-core machine);
#   c. peer-fetch latency of 64 KiB tarballs (p50, p90; goal p50 ≤ 5 ms) against the same
#      tarballs fetched through a node from upstream.
# Medians of RUNS (default 3) where a measure repeats. Appends a Markdown report to $1.
#
#   bash bench/p2p.sh REPORT.md          (after `cargo build --release`; ~5 min)
#
# ONLY=one-peer stops after the one-peer transfers and prints their medians (no report).
# PERF=1 also profiles both nodes of the first one-peer transfer with `perf record` (Debian's
# linux-perf) and prints their top symbols (kept in /tmp/bench-p2p/logs/perf-*.txt).
#
# The upstream is bench/fake_upstream.py (random bytes, real sha512 integrity).
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/p2p.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
B=/tmp/bench-p2p
RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
SMALL=${SMALL:-60}
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
FAKE_PORT=8096
[ -x "$CAIRN" ] || { echo "no Cairn binary at $CAIRN (cargo build --release)" >&2; exit 1; }
rm -rf "$B" && mkdir -p "$B/logs"
# On the way out: stop what was started, and drop the nodes' stores and the artifact (GiBs each), keeping the logs.
trap 'lib_cleanup; find "$B" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +' EXIT

hex=$(head -c32 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '/key/swarm/psk/1.0.0/\n/base16/\n%s\n' "$hex" > "$B/swarm.key"

NEXT_PORT=7810
KEY_ARGS=(--swarm-key "$B/swarm.key")   # emptied (with trust) for the open-swarm runs
CLK=$(getconf CLK_TCK)
# cpu_s PID: CPU seconds (user + system) the process has used so far.
cpu_s() { awk -v c="$CLK" '{printf "%.2f", ($14 + $15) / c}' "/proc/$1/stat"; }
# faults PID: minor page faults the process has taken so far.
faults() { awk '{print $10}' "/proc/$1/stat"; }
# start_node NAME [ARGS…]: start `cairn serve` with its own store and ports; sets NODE_URL,
# NODE_PID and NODE_ADDR (its libp2p address with /p2p/ID).
start_node() {
  local name=$1; shift
  local http=$NEXT_PORT p2p=$((NEXT_PORT + 100))
  NEXT_PORT=$((NEXT_PORT + 1))
  local id
  id=$("$CAIRN" id --data-dir "$B/$name" 2> /dev/null | awk 'NR == 1')  # (it is not running yet)
  "$CAIRN" serve --listen "127.0.0.1:$http" --data-dir "$B/$name" \
    --p2p-listen "/ip4/127.0.0.1/tcp/$p2p" --no-mdns "${KEY_ARGS[@]}" \
    --cargo-upstream http://127.0.0.1:9/ --pypi-upstream http://127.0.0.1:9/ \
    --apt-upstream x=http://127.0.0.1:9/ --apt-keyring x=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$@" > "$B/logs/$name.out" 2> "$B/logs/$name.err" &
  NODE_PID=$!; PIDS+=("$NODE_PID")
  for _ in $(seq 200); do grep -q 'listening' "$B/logs/$name.out" 2>/dev/null && break; sleep 0.05; done
  grep -q 'listening' "$B/logs/$name.out" || { cat "$B/logs/$name.err" >&2; exit 1; }
  NODE_URL="http://127.0.0.1:$http"
  NODE_ADDR="/ip4/127.0.0.1/tcp/$p2p/p2p/$id"
}
upstream_args() { echo "--npm-upstream http://127.0.0.1:$FAKE_PORT/"; }
# peers_of URL: how many peers the node is connected to.
peers_of() { curl -sf "$1/api/v1/peers" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["peers"]))'; }
wait_peers() {  # wait_peers URL N: until the node sees N peers (20 s at most)
  for _ in $(seq 200); do [ "$(peers_of "$1")" -ge "$2" ] && return 0; sleep 0.1; done
  echo "node $1 sees fewer than $2 peers" >&2; return 1
}
# fetch URL PATH: seconds to fetch it whole (and fail loudly).
fetch() { curl -sf -o /dev/null -w '%{time_total}\n' "$1$2"; }
metric() {  # metric URL NAME: the sum of a metric's samples
  curl -sf "$1/metrics" | awk -v m="$2" '$1 ~ "^"m {s+=$NF} END{printf "%.0f\n", s}'
}
upstream_bytes() { curl -sf "http://127.0.0.1:$FAKE_PORT/-/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tarball_bytes"])'; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN{ if (s+0 > 0) printf "%.0f", b/1048576/s; else print "n/a" }'; }

log "fake upstream: ${SIZE_MIB} MiB artifact and $SMALL small packages"
python3 "$HERE/fake_upstream.py" --port $FAKE_PORT --dir "$B/huge" --size-mib "$SIZE_MIB" --small "$SMALL" \
  > "$B/logs/fake.out" 2> "$B/logs/fake.err" &
PIDS+=("$!")
for _ in $(seq 600); do grep -q listening "$B/logs/fake.out" 2>/dev/null && break; sleep 1; done
SIZE=$((SIZE_MIB * 1048576))
TGZ=/npm/huge/-/huge-1.0.0.tgz

# ---- a. throughput from 1 and 3 peers against raw TCP ----
# shellcheck disable=SC2046
start_node a $(upstream_args); A_URL=$NODE_URL; A_ADDR=$NODE_ADDR; A_PID=$NODE_PID
curl -sf -o /dev/null "$A_URL/npm/huge"
fetch "$A_URL" "$TGZ" > /dev/null
blob=""
for _ in $(seq 300); do blob=$(find "$B/a/blobs" -type f -size +1M | head -1); [ -n "$blob" ] && break; sleep 0.1; done
log "raw TCP: sendfile of the blob to a reader on 127.0.0.1"
raw=()
for run in $(seq "$RUNS"); do
  raw+=("$(python3 - "$blob" <<'PY'
import socket, sys, threading, time
path = sys.argv[1]
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
def send():
    c, _ = srv.accept()
    with open(path, "rb") as f:
        c.sendfile(f)
    c.close()
t = threading.Thread(target=send); t.start()
cli = socket.create_connection(srv.getsockname())
start = time.monotonic(); buf = bytearray(1 << 20); view = memoryview(buf)
while cli.recv_into(view):
    pass
print(f"{time.monotonic() - start:.3f}")
t.join()
PY
)")
done
raw_s=$(median "${raw[@]}")

one=(); send_cpu=(); recv_cpu=()
for run in $(seq "$RUNS"); do
  rm -rf "$B/x1-$run"
  start_node "x1-$run" --offline --bootstrap "$A_ADDR"; X=$NODE_URL; XPID=$NODE_PID
  wait_peers "$X" 1
  curl -sf -o /dev/null "$X/npm/huge"
  a0=$(cpu_s "$A_PID"); x0=$(cpu_s "$XPID"); af0=$(faults "$A_PID"); xf0=$(faults "$XPID")
  if [ -n "${PERF:-}" ] && [ "$run" = 1 ]; then  # profile both sides of the first transfer
    perf record -F 499 -g -o "$B/logs/perf-sender.data" -p "$A_PID" > /dev/null 2>&1 & PERF_A=$!
    perf record -F 499 -g -o "$B/logs/perf-receiver.data" -p "$XPID" > /dev/null 2>&1 & PERF_X=$!
    sleep 0.5
  fi
  one+=("$(fetch "$X" "$TGZ")")
  if [ -n "${PERF:-}" ] && [ "$run" = 1 ]; then
    kill -INT "$PERF_A" "$PERF_X"; wait "$PERF_A" "$PERF_X" 2>/dev/null || true
    for side in sender receiver; do
      perf report -i "$B/logs/perf-$side.data" --no-children --sort symbol --stdio 2>/dev/null \
        | awk '/^ +[0-9.]+%/ && n++ < 25' > "$B/logs/perf-$side.txt" || true
      log "perf, $side (top symbols; $B/logs/perf-$side.txt):"; sed -n 1,12p "$B/logs/perf-$side.txt" >&2
    done
  fi
  send_cpu+=("$(awk -v a="$a0" -v b="$(cpu_s "$A_PID")" -v m="$SIZE_MIB" 'BEGIN{printf "%.2f", (b-a)*1024/m}')")
  recv_cpu+=("$(awk -v a="$x0" -v b="$(cpu_s "$XPID")" -v m="$SIZE_MIB" 'BEGIN{printf "%.2f", (b-a)*1024/m}')")
  log "  1 peer, run $run: ${one[-1]} s (CPU-s per GiB: sender ${send_cpu[-1]}, receiver ${recv_cpu[-1]}; page faults per MiB: sender $(( ($(faults "$A_PID") - af0) / SIZE_MIB )), receiver $(( ($(faults "$XPID") - xf0) / SIZE_MIB )))"
  stop_pid "$XPID"
done
if [ "${ONLY:-}" = one-peer ]; then
  log "ONLY=one-peer: 1 peer, median $(median "${one[@]}") s; CPU-s per GiB: sender $(median "${send_cpu[@]}"), receiver $(median "${recv_cpu[@]}") (no report written)"
  exit 0
fi
# The same from a holder in an open swarm (no swarm key: noise without the key in its prologue).
KEY_ARGS=(--trust-peer-metadata)
# shellcheck disable=SC2046
start_node oa $(upstream_args); O_URL=$NODE_URL; O_ADDR=$NODE_ADDR
curl -sf -o /dev/null "$O_URL/npm/huge"; fetch "$O_URL" "$TGZ" > /dev/null
open1=()
for run in $(seq "$RUNS"); do
  start_node "ox-$run" --offline --bootstrap "$O_ADDR"; X=$NODE_URL; XPID=$NODE_PID
  wait_peers "$X" 1
  curl -sf -o /dev/null "$X/npm/huge"
  open1+=("$(fetch "$X" "$TGZ")")
  log "  1 peer, open swarm, run $run: ${open1[-1]} s"
  stop_pid "$XPID"
done
KEY_ARGS=(--swarm-key "$B/swarm.key")
# Two more holders, fed from A through the swarm.
start_node p2 --offline --bootstrap "$A_ADDR"; P2=$NODE_URL; wait_peers "$P2" 1
curl -sf -o /dev/null "$P2/npm/huge"; fetch "$P2" "$TGZ" > /dev/null
start_node p3 --offline --bootstrap "$A_ADDR"; P3=$NODE_URL; wait_peers "$P3" 1
curl -sf -o /dev/null "$P3/npm/huge"; fetch "$P3" "$TGZ" > /dev/null
three=(); spread=""
for run in $(seq "$RUNS"); do
  start_node "x3-$run" --offline --bootstrap "$A_ADDR"; X=$NODE_URL; XPID=$NODE_PID
  wait_peers "$X" 3
  curl -sf -o /dev/null "$X/npm/huge"
  three+=("$(fetch "$X" "$TGZ")")
  spread=$(curl -sf "$X/metrics" | awk '/^cairn_peer_received_bytes_total/{printf "%.0f MiB ", $NF/1048576}')
  log "  3 peers, run $run: ${three[-1]} s (per peer: $spread)"
  stop_pid "$XPID"
done
one_s=$(median "${one[@]}"); three_s=$(median "${three[@]}"); open1_s=$(median "${open1[@]}")

# ---- b. 8 nodes, one uncached artifact, at once ----
log "alone: one node fetches the artifact from upstream"
alone=()
for run in $(seq "$RUNS"); do
  start_node "alone-$run" $(upstream_args) --no-p2p; L=$NODE_URL; LPID=$NODE_PID
  curl -sf -o /dev/null "$L/npm/huge"
  alone+=("$(fetch "$L" "$TGZ")")
  stop_pid "$LPID"
done
alone_s=$(median "${alone[@]}")
for p in "${PIDS[@]:1}"; do stop_pid "$p"; done
PIDS=("${PIDS[0]}")
log "stampede: 8 nodes ask at once"
urls=()
# Every node bootstraps to every node started before it: a full mesh, as mDNS gives on a LAN.
boot=(); spids=()
for i in 1 2 3 4 5 6 7 8; do
  # shellcheck disable=SC2046
  start_node "s$i" $(upstream_args) "${boot[@]}"; urls+=("$NODE_URL"); boot+=(--bootstrap "$NODE_ADDR")
  spids+=("$NODE_PID")
done
for u in "${urls[@]}"; do wait_peers "$u" 7; done
for u in "${urls[@]}"; do curl -sf -o /dev/null "$u/npm/huge"; done
sleep 2
before=$(upstream_bytes)
cpu_before=0; for p in "${spids[@]}"; do cpu_before=$(awk -v a="$cpu_before" -v b="$(cpu_s "$p")" 'BEGIN{print a+b}'); done
fetchers=()
for i in "${!urls[@]}"; do
  (fetch "${urls[$i]}" "$TGZ" > "$B/stampede-$i.time") &
  fetchers+=("$!")
done
for j in "${fetchers[@]}"; do wait "$j" || true; done
after=$(upstream_bytes)
sent=$((after - before))
cpu_after=0; for p in "${spids[@]}"; do cpu_after=$(awk -v a="$cpu_after" -v b="$(cpu_s "$p")" 'BEGIN{print a+b}'); done
stampede_cpu=$(awk -v a="$cpu_before" -v b="$cpu_after" 'BEGIN{printf "%.1f", b-a}')
times=(); for i in "${!urls[@]}"; do times+=("$(cat "$B/stampede-$i.time" 2>/dev/null || echo FAIL)"); done
slowest=$(printf '%s\n' "${times[@]}" | sort -g | tail -1)
from_peers=0; for u in "${urls[@]}"; do from_peers=$((from_peers + $(metric "$u" cairn_peer_received_bytes_total))); done
log "  upstream sent $sent bytes; times ${times[*]}"
for p in "${PIDS[@]:1}"; do stop_pid "$p"; done
PIDS=("${PIDS[0]}")

# ---- c. small-tarball latency: from a peer against from upstream ----
log "latency: $SMALL tarballs of 64 KiB"
# shellcheck disable=SC2046
start_node c-holder $(upstream_args); H=$NODE_URL; H_ADDR=$NODE_ADDR
for i in $(seq 0 $((SMALL - 1))); do
  curl -sf -o /dev/null "$H/npm/small$i"; curl -sf -o /dev/null "$H/npm/small$i/-/small$i-1.0.0.tgz"
done
start_node c-asker --offline --bootstrap "$H_ADDR"; Q=$NODE_URL; wait_peers "$Q" 1
# shellcheck disable=SC2046
start_node c-direct $(upstream_args) --no-p2p; D=$NODE_URL
peer_ms=(); up_ms=()
for i in $(seq 0 $((SMALL - 1))); do
  curl -sf -o /dev/null "$Q/npm/small$i"; curl -sf -o /dev/null "$D/npm/small$i"
  peer_ms+=("$(fetch "$Q" "/npm/small$i/-/small$i-1.0.0.tgz" | awk '{printf "%.2f", $1*1000}')")
  up_ms+=("$(fetch "$D" "/npm/small$i/-/small$i-1.0.0.tgz" | awk '{printf "%.2f", $1*1000}')")
done
pct() { printf '%s\n' "${@:2}" | sort -g | awk -v p="$1" '{a[NR]=$1} END{i=int((NR-1)*p/100)+1; print a[i]}'; }
p50=$(pct 50 "${peer_ms[@]}"); p90=$(pct 90 "${peer_ms[@]}")
u50=$(pct 50 "${up_ms[@]}"); u90=$(pct 90 "${up_ms[@]}")

{
  echo
  echo "## The swarm ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Machine: $(machine). Command: \`bash bench/p2p.sh REPORT.md\` (RUNS=$RUNS, SIZE_MIB=$SIZE_MIB, SMALL=$SMALL). All nodes on 127.0.0.1 with one swarm key (TCP + noise bound to the key + yamux); medians."
  echo
  echo "| ${SIZE_MIB} MiB artifact | seconds | MiB/s | vs raw TCP (goal ≥ 0.80) |"
  echo "|---|---:|---:|---:|"
  echo "| raw TCP (sendfile → reader, loopback) | $raw_s | $(mbps $SIZE "$raw_s") | 1.00 |"
  echo "| from 1 peer | $one_s | $(mbps $SIZE "$one_s") | $(ratio "$raw_s" "$one_s") |"
  echo "| from 1 peer, open swarm (no swarm key) | $open1_s | $(mbps $SIZE "$open1_s") | $(ratio "$raw_s" "$open1_s") |"
  echo "| from 3 peers | $three_s | $(mbps $SIZE "$three_s") | $(ratio "$raw_s" "$three_s") |"
  echo
  echo "Bytes per peer in the last 3-peer run: $spread. CPU seconds per GiB in the 1-peer runs (median): sender $(median "${send_cpu[@]}"), receiver $(median "${recv_cpu[@]}")."
  echo
  echo "| 8 nodes ask at once for an uncached ${SIZE_MIB} MiB artifact | value | goal |"
  echo "|---|---:|---|"
  echo "| upstream sent | $(awk -v b=$sent -v s=$SIZE 'BEGIN{printf "%.2f× the file", b/s}') | ≤ 1.10× |"
  echo "| bytes the 8 nodes took from peers | $(awk -v b=$from_peers 'BEGIN{printf "%.0f MiB", b/1048576}') | |"
  echo "| one node alone, from upstream | ${alone_s} s | |"
  echo "| slowest of the 8 | ${slowest} s ($(ratio "$slowest" "$alone_s")× alone) | ≤ 6× |"
  echo "| all 8 | ${times[*]} | |"
  echo "| CPU the 8 nodes used meanwhile | ${stampede_cpu} CPU-s ($(awk -v c="$stampede_cpu" -v n="$(nproc)" 'BEGIN{printf "%.1f", c/n}') s of this machine's $(nproc) cores) | |"
  echo
  echo "| 64 KiB tarball, a miss on the asking node | p50 ms | p90 ms | goal |"
  echo "|---|---:|---:|---|"
  echo "| from a peer (provider lookup, resolve, Bitswap, verify, commit) | $p50 | $p90 | p50 ≤ 5 ms |"
  echo "| from upstream (the fake, through a node without p2p) | $u50 | $u90 | peer faster |"
} >> "$OUT"
log "report appended to $OUT"
