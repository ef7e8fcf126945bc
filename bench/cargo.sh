#!/usr/bin/env bash
# bench/cargo.sh: Cairn as a cargo cache. Measures:
#   - wall time of `cargo fetch --locked` of bench/cargo-project (its Cargo.lock pins ~320
#     crates), each run with an empty CARGO_HOME: direct to the upstream sparse index, through
#     Cairn cold (empty store) and warm, and through an nginx proxy_cache in front of the same
#     upstream, cold and warm (a plain HTTP cache: the floor);
#   - wrk hit throughput and p99 latency (c=1, c=64) on a cached index file, Cairn vs nginx
#     serving the same bytes from disk;
#   - Cairn's RSS idle and under load.
# Appends a Markdown report to $1. Run from the repository root after `cargo build --release`:
#
#   sudo bash bench/cargo.sh BENCHMARKS-run.md        (~5 minutes)
#
# The upstream is found as Cairn finds it: the sparse index cargo's registry cache is named
# after. Installs nginx and wrk (apt) if missing. All load targets 127.0.0.1. Knobs: RUNS=3,
# WRK_SECS=10, CAIRN_BIN (default target/release/cairn).
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/cargo.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PROJECT=$HERE/cargo-project
B=/tmp/bench-cargo
RUNS=${RUNS:-3}
WRK_SECS=${WRK_SECS:-10}
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
CAIRN_PORT=7711
NGX_CACHE_PORT=8093
NGX_STATIC_PORT=8094
INDEX_FILE=se/rd/serde
PIDS=()

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0 > 0) printf "%.2f", a/b; else print "n/a" }'; }
rss_mb() { awk '/^VmRSS/{printf "%.1f\n", $2/1024}' "/proc/$1/status" 2>/dev/null || echo n/a; }
finish() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$B/nginx/nginx.pid" ] && nginx -p "$B/nginx/" -c "$B/nginx/nginx.conf" -s stop 2>/dev/null || true
}
trap finish EXIT

command -v wrk >/dev/null && command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx wrk >/dev/null; }
[ -x "$CAIRN" ] || { echo "no Cairn binary at $CAIRN (cargo build --release)" >&2; exit 1; }
cargo_home=${CARGO_HOME:-$HOME/.cargo}
UP_HOST=$(ls "$cargo_home/registry/index" 2>/dev/null | sed -nE 's/^(.+\..+)-[0-9a-f]{16}$/\1/p' | head -1)
[ -n "$UP_HOST" ] || { echo "no sparse index in $cargo_home/registry/index to front" >&2; exit 1; }
UPSTREAM="https://$UP_HOST/"
rm -rf "$B" && mkdir -p "$B"/{logs,nginx/cache,nginx/logs,www}
NCRATES=$(grep -c '^checksum' "$PROJECT/Cargo.lock")
log "fetching $NCRATES crates; upstream found in cargo's registry cache"

# fetch LABEL [REGISTRY]: one `cargo fetch --locked` with an empty CARGO_HOME; prints seconds.
fetch() {
  local home=$B/home-$1-$RANDOM
  mkdir -p "$home"
  if [ -n "${2:-}" ]; then
    printf '[source.crates-io]\nreplace-with = "m"\n[source.m]\nregistry = "sparse+%s"\n' "$2" > "$home/config.toml"
  fi
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$PROJECT" && CARGO_HOME=$home cargo fetch --locked -q) > "$B/logs/fetch-$1.log" 2>&1 \
    || { echo "cargo fetch ($1) failed:" >&2; cat "$B/logs/fetch-$1.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  [ "$(ls "$home"/registry/cache/*/ | wc -l)" -eq "$NCRATES" ] || { echo "$1: wrong crate count" >&2; exit 1; }
  rm -rf "$home"
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}'
}

start_cairn() {  # start_cairn DATADIR
  "$CAIRN" serve --listen 127.0.0.1:$CAIRN_PORT --data-dir "$1" --cargo-upstream "$UPSTREAM" \
    --npm-upstream http://127.0.0.1:9/ > "$B/logs/cairn.out" 2>> "$B/logs/cairn.err" &
  CAIRN_PID=$!
  PIDS+=("$CAIRN_PID")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$CAIRN_PORT/healthz" >/dev/null && return; sleep 0.1; done
  echo "cairn did not start" >&2; exit 1
}

cat > "$B/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $B/nginx/nginx.pid;
error_log $B/nginx/logs/error.log;
events { worker_connections 2048; }
http {
  access_log off;
  sendfile on; tcp_nopush on;
  proxy_cache_path $B/nginx/cache levels=1:2 keys_zone=c:50m max_size=5g inactive=1d use_temp_path=off;
  server {
    listen 127.0.0.1:$NGX_CACHE_PORT;
    location / {
      proxy_pass $UPSTREAM;
      proxy_ssl_server_name on;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Accept-Encoding "";
      proxy_cache c;
      proxy_cache_valid 200 1d;
      proxy_ignore_headers Cache-Control Expires Set-Cookie;
      sub_filter_types application/json;
      sub_filter_once off;
      sub_filter "https://$UP_HOST:443" "http://127.0.0.1:$NGX_CACHE_PORT";
      sub_filter "https://$UP_HOST" "http://127.0.0.1:$NGX_CACHE_PORT";
    }
  }
  server {
    listen 127.0.0.1:$NGX_STATIC_PORT;
    root $B/www;
    location / { default_type text/plain; }
  }
}
EOF
nginx -p "$B/nginx/" -c "$B/nginx/nginx.conf"

declare -A T
add() { T[$1]="${T[$1]:-} $2"; log "$1: $2 s"; }
for i in $(seq "$RUNS"); do
  add direct "$(fetch direct)"
  rm -rf "$B/cairn-data"; start_cairn "$B/cairn-data"
  add cairn_cold "$(fetch cairn_cold "http://127.0.0.1:$CAIRN_PORT/cargo/index/")"
  add cairn_warm "$(fetch cairn_warm "http://127.0.0.1:$CAIRN_PORT/cargo/index/")"
  kill "$CAIRN_PID"; wait "$CAIRN_PID" 2>/dev/null || true
  nginx -p "$B/nginx/" -c "$B/nginx/nginx.conf" -s stop; sleep 0.5
  rm -rf "$B/nginx/cache"/*; nginx -p "$B/nginx/" -c "$B/nginx/nginx.conf"
  add nginx_cold "$(fetch nginx_cold "http://127.0.0.1:$NGX_CACHE_PORT/")"
  add nginx_warm "$(fetch nginx_warm "http://127.0.0.1:$NGX_CACHE_PORT/")"
done
med() { median ${T[$1]}; }

# Hit throughput on one cached index file, Cairn vs nginx serving the same bytes.
start_cairn "$B/cairn-data"
IDLE_RSS=$(rss_mb "$CAIRN_PID")
URL_C="http://127.0.0.1:$CAIRN_PORT/cargo/index/$INDEX_FILE"
mkdir -p "$B/www/$(dirname $INDEX_FILE)"
curl -sf "$URL_C" -o "$B/www/$INDEX_FILE"
URL_N="http://127.0.0.1:$NGX_STATIC_PORT/$INDEX_FILE"
SIZE=$(stat -c %s "$B/www/$INDEX_FILE")
declare -A RPS P99
wrk_one() {  # wrk_one KEY CONC URL
  local t=$(( $2 < 2 ? 1 : 2 )) out
  out=$(wrk -t$t -c$2 -d${WRK_SECS}s --latency "$3")
  RPS[$1]=$(echo "$out" | awk '/Requests\/sec/{printf "%.0f", $2}')
  P99[$1]=$(echo "$out" | awk '$1=="99%"{v=$2; n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.2f", n}')
  log "wrk $1: ${RPS[$1]} req/s, p99 ${P99[$1]} ms"
}
PEAK=0
for c in 1 64; do
  wrk_one "nginx_$c" $c "$URL_N"
  ( while sleep 0.2; do rss_mb "$CAIRN_PID"; done ) > "$B/logs/rss-$c" & SAMPLER=$!
  wrk_one "cairn_$c" $c "$URL_C"
  kill $SAMPLER 2>/dev/null || true
  p=$(sort -g "$B/logs/rss-$c" | tail -1); PEAK=$(awk -v a="$PEAK" -v b="${p:-0}" 'BEGIN{print (b>a)?b:a}')
done
WARN=$(grep -cE ' (WARN|ERROR) ' "$B/logs/cairn.err" || true)

{
  echo
  echo "## cargo: \`cargo fetch --locked\` of $NCRATES crates, and index-file hits ($(date -u +%Y-%m-%d), $(nproc) cores)"
  echo
  echo "Command: \`sudo bash bench/cargo.sh REPORT.md\` (RUNS=$RUNS). Empty CARGO_HOME every run; seconds, median of $RUNS (all runs in brackets)."
  echo
  echo "| configuration | median s | runs | vs direct |"
  echo "|---|---|---|---|"
  for k in direct cairn_cold cairn_warm nginx_cold nginx_warm; do
    echo "| $k | $(med $k) | $(echo ${T[$k]} | sed 's/ /, /g') | $(ratio "$(med $k)" "$(med direct)")× |"
  done
  echo
  echo "Goals: warm ≤ 1.0× direct → **$(ratio "$(med cairn_warm)" "$(med direct)")×**; cold ≤ 1.2× direct → **$(ratio "$(med cairn_cold)" "$(med direct)")×**; Cairn warm vs nginx warm: $(ratio "$(med cairn_warm)" "$(med nginx_warm)")×."
  echo
  echo "Hit throughput on the cached index file \`$INDEX_FILE\` ($SIZE bytes), wrk ${WRK_SECS}s:"
  echo
  echo "| c | nginx static req/s | nginx p99 ms | Cairn req/s | Cairn p99 ms | Cairn / nginx |"
  echo "|---|---|---|---|---|---|"
  for c in 1 64; do
    echo "| $c | ${RPS[nginx_$c]} | ${P99[nginx_$c]} | ${RPS[cairn_$c]} | ${P99[cairn_$c]} | $(ratio "${RPS[cairn_$c]}" "${RPS[nginx_$c]}")× |"
  done
  echo
  echo "Cairn RSS: ${IDLE_RSS} MB idle after restart, ${PEAK} MB peak under wrk. Warnings/errors in Cairn's log: $WARN."
} >> "$OUT"
log "report appended to $OUT"
