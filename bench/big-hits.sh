#!/usr/bin/env bash
# bench/big-hits.sh: hits on a large cached file, side by side in one run. A SIZE_MIB (default
# 4) npm tarball of random bytes from a local fake upstream (bench/fake_upstream.py) is cached by
# each Cairn binary given, then wrk (c=1 and c=64, WRK_SECS each) asks every server for it in
# turn, ROUNDS times (interleaved, so all share the machine's noise): each Cairn, which reads
# the file a 1 MiB leaf at a time and checks every leaf's sha2-256 before sending it, and nginx
# serving the same bytes as a static file with sendfile. Medians of the rounds, and each
# Cairn's peak RSS over the run; appends a Markdown report to $1.
#
#   bash bench/big-hits.sh REPORT.md [CAIRN_BIN…]     (default: target/release/cairn; ~4 min)
#
# Knobs: SIZE_MIB=4, ROUNDS=3, WRK_SECS=8. Installs nginx and wrk (apt) if missing.
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/big-hits.sh REPORT.md [CAIRN_BIN…]}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
shift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
B=/tmp/bench-big-hits
SIZE_MIB=${SIZE_MIB:-4}
ROUNDS=${ROUNDS:-3}
export WRK_SECS=${WRK_SECS:-8}
BINS=("$@")
[ "${#BINS[@]}" -gt 0 ] || BINS=("$REPO/target/release/cairn")
FAKE_PORT=8098
NGX_PORT=8099
need_tools nginx nginx
need_tools wrk wrk
rm -rf "$B" && mkdir -p "$B/logs"
PIDS=()
trap 'lib_cleanup; rm -rf "$B/up" "$B"/store-* "$B/static"' EXIT
declare -A WRPS WP99 WERR

python3 "$HERE/fake_upstream.py" --port $FAKE_PORT --dir "$B/up" --size-mib "$SIZE_MIB" \
  > "$B/logs/fake.out" 2> "$B/logs/fake.err" &
PIDS+=("$!")
wait_for "$!" 600 grep -q listening "$B/logs/fake.out"

URLS=(); PEAK_FILES=()
for i in "${!BINS[@]}"; do
  CAIRN=${BINS[$i]}
  port=$((7830 + i))
  start_cairn "$i" "$B/store-$i" --listen "127.0.0.1:$port" --no-p2p \
    --npm-upstream "http://127.0.0.1:$FAKE_PORT/" --cargo-upstream http://127.0.0.1:9/ \
    --pypi-upstream http://127.0.0.1:9/ --apt-upstream x=http://127.0.0.1:9/ \
    --apt-keyring x=/usr/share/keyrings/debian-archive-keyring.gpg
  url="http://127.0.0.1:$port/npm/huge/-/huge-1.0.0.tgz"
  curl -sf -o /dev/null "http://127.0.0.1:$port/npm/huge"
  curl -sf -o "$B/tarball-$i" "$url"
  URLS+=("$url")
  start_sampler "$CAIRN_PID" "$B/peak-$i"; PEAK_FILES+=("$B/peak-$i")
done
mkdir -p "$B/static"
cp "$B/tarball-0" "$B/static/huge.tgz"
{
  nginx_common "$B/nginx"
  echo "http {"
  nginx_http_common "$B/nginx"
  echo "  server { listen 127.0.0.1:$NGX_PORT; root $B/static; }"
  echo "}"
} > "$B/nginx.conf.tmp"
mkdir -p "$B/nginx" && mv "$B/nginx.conf.tmp" "$B/nginx/nginx.conf"
start_nginx "$B/nginx" "http://127.0.0.1:$NGX_PORT/huge.tgz"

for round in $(seq "$ROUNDS"); do
  log "round $round"
  for c in 1 64; do
    for i in "${!BINS[@]}"; do run_wrk "cairn$i-$c" "$c" "${URLS[$i]}"; done
    run_wrk "nginx-$c" "$c" "http://127.0.0.1:$NGX_PORT/huge.tgz"
  done
done

{
  echo
  echo "## Hits on a ${SIZE_MIB} MiB cached tarball ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Machine: $(machine). Command: \`SIZE_MIB=$SIZE_MIB ROUNDS=$ROUNDS WRK_SECS=$WRK_SECS bash bench/big-hits.sh REPORT.md${*:+ BINS…}\`; wrk for ${WRK_SECS} s per cell, medians of $ROUNDS interleaved rounds [all rounds]."
  echo
  echo "| server | c | req/s | MB/s | p99 ms | vs nginx |"
  echo "|---|---:|---:|---:|---:|---:|"
  for c in 1 64; do
    ngx=$(median ${WRPS[nginx-$c]})
    for i in "${!BINS[@]}"; do
      rps=$(median ${WRPS[cairn$i-$c]})
      echo "| Cairn \`${BINS[$i]}\` | $c | $rps [${WRPS[cairn$i-$c]# }] | $(awk -v r="$rps" -v m="$SIZE_MIB" 'BEGIN{printf "%.0f", r*m*1.048576}') | $(median ${WP99[cairn$i-$c]}) | $(ratio "$rps" "$ngx")× |"
    done
    echo "| nginx (sendfile) | $c | $ngx [${WRPS[nginx-$c]# }] | $(awk -v r="$ngx" -v m="$SIZE_MIB" 'BEGIN{printf "%.0f", r*m*1.048576}') | $(median ${WP99[nginx-$c]}) | 1.00× |"
  done
  echo
  for i in "${!BINS[@]}"; do
    echo "Peak RSS of \`${BINS[$i]}\` over the whole run (0.2 s samples): $(awk '{printf "%.1f", $1/1024}' "${PEAK_FILES[$i]}") MB."
  done
  echo
  echo "Errors (non-2xx and socket errors): $(for k in "${!WERR[@]}"; do printf '%s %s; ' "$k" "${WERR[$k]}"; done)"
} >> "$OUT"
log "report appended to $OUT"
