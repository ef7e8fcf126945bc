#!/usr/bin/env bash
# bench/tls.sh: hits over TLS. One Cairn store, holding a small (64 KiB) and a large (1 MiB)
# npm tarball fetched from bench/fake_upstream.py, served by `cairn serve` over plain HTTP and
# over TLS (`--tls-cert/--tls-key`, a test CA made with openssl), and the same two files served
# by nginx over TLS from its disk (the floor). wrk at c=1 and c=64 (keep-alive, HTTP/1.1: wrk
# does not speak HTTP/2), RUNS rounds interleaved. Appends a Markdown report to $1.
#
#   sudo bash bench/tls.sh REPORT.md     (after `cargo build --release`; ~6 min)
#
# Knobs: RUNS=3, WRK_SECS=5, CAIRN_BIN (default target/release/cairn).
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/tls.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
B=/tmp/bench-tls
RUNS=${RUNS:-3}
WRK_SECS=${WRK_SECS:-5}
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
FAKE_PORT=8098
[ -x "$CAIRN" ] || { echo "no Cairn binary at $CAIRN (cargo build --release)" >&2; exit 1; }
need_tools wrk wrk
need_tools nginx nginx
rm -rf "$B" && mkdir -p "$B/logs" "$B/certs" "$B/www"
trap lib_cleanup EXIT
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

test_ca "$B/certs"

python3 "$HERE/fake_upstream.py" --port $FAKE_PORT --dir "$B/huge" --size-mib 1 --small 1 \
  > "$B/logs/fake.out" 2> "$B/logs/fake.err" &
PIDS+=("$!")
for _ in $(seq 600); do grep -q listening "$B/logs/fake.out" 2>/dev/null && break; sleep 0.2; done
SMALL=/npm/small0/-/small0-1.0.0.tgz
LARGE=/npm/huge/-/huge-1.0.0.tgz

serve() {  # serve LABEL PORT [ARGS…]
  local label=$1 port=$2; shift 2
  "$CAIRN" serve --data-dir "$B/data" --listen "127.0.0.1:$port" --no-p2p \
    --npm-upstream "http://127.0.0.1:$FAKE_PORT/" "$@" \
    > "$B/logs/cairn-$label.out" 2> "$B/logs/cairn-$label.err" &
  CAIRN_PID=$!; PIDS+=("$CAIRN_PID")
  wait_for "$CAIRN_PID" 30 grep -q 'cairn listening on' "$B/logs/cairn-$label.out"
}
# Fill the store through plain HTTP, and give nginx the same bytes.
serve fill 7771
curl -sf -o "$B/www/small.tgz" "http://127.0.0.1:7771$SMALL"
curl -sf -o "$B/www/large.tgz" "http://127.0.0.1:7771$LARGE"
stop_pid "$CAIRN_PID"; PIDS=("${PIDS[0]}")

{
  nginx_common "$B/nginx"
  echo "http {"
  nginx_http_common "$B/nginx"
  cat <<NGX
  server {
    listen 127.0.0.1:7773 ssl;
    ssl_certificate $B/certs/server.crt;
    ssl_certificate_key $B/certs/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    root $B/www;
    location = $SMALL { alias $B/www/small.tgz; }
    location = $LARGE { alias $B/www/large.tgz; }
  }
}
NGX
} > "$B/nginx.conf.tmp"
mkdir -p "$B/nginx" && mv "$B/nginx.conf.tmp" "$B/nginx/nginx.conf"

declare -A WRPS WP99 WERR
for run in $(seq 1 "$RUNS"); do
  log "round $run/$RUNS"
  serve plain 7771
  for c in 1 64; do
    run_wrk "plain-small-$c" "$c" "http://127.0.0.1:7771$SMALL"
    run_wrk "plain-large-$c" "$c" "http://127.0.0.1:7771$LARGE"
  done
  stop_pid "$CAIRN_PID"
  serve tls 7772 --tls-cert "$B/certs/server.crt" --tls-key "$B/certs/server.key"
  for c in 1 64; do
    run_wrk "tls-small-$c" "$c" "https://127.0.0.1:7772$SMALL"
    run_wrk "tls-large-$c" "$c" "https://127.0.0.1:7772$LARGE"
  done
  stop_pid "$CAIRN_PID"
  start_nginx "$B/nginx"
  for c in 1 64; do
    run_wrk "nginx-small-$c" "$c" "https://127.0.0.1:7773$SMALL"
    run_wrk "nginx-large-$c" "$c" "https://127.0.0.1:7773$LARGE"
  done
  stop_nginx
done

{
  echo "### Hits over TLS"
  echo
  echo "\`RUNS=$RUNS WRK_SECS=$WRK_SECS sudo bash bench/tls.sh REPORT.md\`. Machine: $(machine). A cached npm tarball of $(stat -c %s "$B/www/small.tgz") bytes (small) and one of $(stat -c %s "$B/www/large.tgz") bytes (large); wrk keep-alive over HTTP/1.1, req/s (p99 ms), medians of $RUNS rounds."
  echo
  echo "| file, connections | Cairn plain HTTP | Cairn TLS | nginx TLS | Cairn TLS / nginx TLS | Cairn TLS / plain |"
  echo "|---|---:|---:|---:|---:|---:|"
  for f in small large; do
    for c in 1 64; do
      p=$(median ${WRPS[plain-$f-$c]}); t=$(median ${WRPS[tls-$f-$c]}); n=$(median ${WRPS[nginx-$f-$c]})
      echo "| $f, c=$c | $p ($(median ${WP99[plain-$f-$c]})) | $t ($(median ${WP99[tls-$f-$c]})) | $n ($(median ${WP99[nginx-$f-$c]})) | $(ratio "$t" "$n") | $(ratio "$t" "$p") |"
    done
  done
  echo
  echo "Errors: $(for k in "${!WERR[@]}"; do [ "${WERR[$k]}" != 0 ] && echo -n "$k ${WERR[$k]}; "; done; echo none beyond those listed)."
  echo
} >> "$OUT"
log "report appended to $OUT"
