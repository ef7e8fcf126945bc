#!/usr/bin/env bash
# bench/cargo-tls.sh: `cargo fetch --locked` of bench/cargo-project (~320 crates), each run with
# an empty CARGO_HOME: direct to the upstream sparse index, and through Cairn over plain HTTP
# and over TLS (`--tls-cert/--tls-key`, a test CA made with openssl and given to cargo as
# `http.cainfo`, so cargo negotiates HTTP/2 and multiplexes its requests on it), each cold (empty
# store) and warm. RUNS rounds interleaved. Appends a Markdown report to $1.
#
#   bash bench/cargo-tls.sh REPORT.md     (after `cargo build --release`; ~4 min)
#
# The upstream is found as Cairn finds it: the sparse index cargo's registry cache is named
# after. Knobs: RUNS=3, CAIRN_BIN (default target/release/cairn).
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/cargo-tls.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
PROJECT=$HERE/cargo-project
B=/tmp/bench-cargo-tls
RUNS=${RUNS:-3}
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
[ -x "$CAIRN" ] || { echo "no Cairn binary at $CAIRN (cargo build --release)" >&2; exit 1; }
cargo_home=${CARGO_HOME:-$HOME/.cargo}
UP_HOST=$(ls "$cargo_home/registry/index" 2>/dev/null | sed -nE 's/^(.+\..+)-[0-9a-f]{16}$/\1/p' | head -1)
[ -n "$UP_HOST" ] || { echo "no sparse index in $cargo_home/registry/index to front" >&2; exit 1; }
UPSTREAM="https://$UP_HOST/"
rm -rf "$B" && mkdir -p "$B/logs" "$B/certs"
trap lib_cleanup EXIT
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
NCRATES=$(grep -c '^checksum' "$PROJECT/Cargo.lock")

test_ca "$B/certs"

# fetch LABEL [REGISTRY]: one `cargo fetch --locked` with an empty CARGO_HOME; prints seconds.
fetch() {
  local home=$B/home-$1-$RANDOM
  mkdir -p "$home"
  if [ -n "${2:-}" ]; then
    printf '[source.crates-io]\nreplace-with = "m"\n[source.m]\nregistry = "sparse+%s"\n[http]\ncainfo = "%s"\n' \
      "$2" "$B/certs/ca.crt" > "$home/config.toml"
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

serve() {  # serve LABEL PORT [ARGS…]
  local label=$1 port=$2; shift 2
  # The accept loop's debug lines say which protocol each TLS connection negotiated.
  CAIRN_LOG="info,cairn_mirror::http::accept=debug" "$CAIRN" serve --data-dir "$B/data-$label" --listen "127.0.0.1:$port" --no-p2p \
    --cargo-upstream "$UPSTREAM" --npm-upstream http://127.0.0.1:9/ "$@" \
    > "$B/logs/cairn-$label.out" 2>> "$B/logs/cairn-$label.err" &
  CAIRN_PID=$!; PIDS+=("$CAIRN_PID")
  wait_for "$CAIRN_PID" 30 grep -q 'cairn listening on' "$B/logs/cairn-$label.out"
}

declare -A T
add() { T[$1]="${T[$1]:-} $2"; log "$1: $2 s"; }
for run in $(seq 1 "$RUNS"); do
  log "round $run/$RUNS"
  add direct "$(fetch direct)"
  rm -rf "$B/data-plain"; serve plain 7791
  add plain_cold "$(fetch plain_cold "http://127.0.0.1:7791/cargo/index/")"
  add plain_warm "$(fetch plain_warm "http://127.0.0.1:7791/cargo/index/")"
  stop_pid "$CAIRN_PID"
  rm -rf "$B/data-tls"; serve tls 7792 --tls-cert "$B/certs/server.crt" --tls-key "$B/certs/server.key"
  add tls_cold "$(fetch tls_cold "https://127.0.0.1:7792/cargo/index/")"
  add tls_warm "$(fetch tls_warm "https://127.0.0.1:7792/cargo/index/")"
  stop_pid "$CAIRN_PID"
done
med() { median ${T[$1]}; }
H2=$(grep -c 'alpn="h2"' "$B/logs/cairn-tls.err" || true)
H1=$(grep -c 'alpn="http/1.1"' "$B/logs/cairn-tls.err" || true)

{
  echo "### cargo over TLS and HTTP/2"
  echo
  echo "\`RUNS=$RUNS bash bench/cargo-tls.sh REPORT.md\`. Machine: $(machine). \`cargo fetch --locked\` of $NCRATES crates, empty CARGO_HOME every run; seconds, median of $RUNS (all runs in brackets)."
  echo
  echo "| configuration | median s | runs | vs direct |"
  echo "|---|---:|---|---:|"
  for k in direct plain_cold plain_warm tls_cold tls_warm; do
    echo "| $k | $(med $k) | $(echo ${T[$k]} | sed 's/^ //; s/ /, /g') | $(ratio "$(med $k)" "$(med direct)") |"
  done
  echo
  echo "TLS / plain: cold $(ratio "$(med tls_cold)" "$(med plain_cold)"), warm $(ratio "$(med tls_warm)" "$(med plain_warm)"). TLS connections cargo opened (the node's debug log): $H2 negotiated h2, $H1 http/1.1."
  echo
} >> "$OUT"
log "report appended to $OUT"
