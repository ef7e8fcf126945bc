#!/usr/bin/env bash
# bench/airgap.sh: the air-gap path on real projects, against the registries this machine's
# clients already use (nothing here names one). In one run:
#   1. node A (online) prefetches three real lockfiles: bench/npm-project's package-lock.json
#      (made here through A), bench/cargo-project/Cargo.lock and bench/pypi-requirements.txt
#      (pinned, no hashes: `pip freeze` style);
#   2. `cairn export --lockfile …` of the three into one CAR (documents over the 2 MiB block
#      limit are counted: real packuments and index pages are that big);
#   3. `cairn import` of the CAR into an empty store (peak RSS by GNU time);
#   4. node B serves that store with `--offline --no-p2p`, and the real clients install from it
#      with empty caches: `npm ci`, `cargo fetch --locked`, `pip download`; the same installs
#      through A (warm, online) are the yardstick.
# Medians of RUNS (default 3) for step 4. Appends a Markdown report to $1.
#
#   sudo bash bench/airgap.sh REPORT.md      (after `cargo build --release`; ~15 min)
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/airgap.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
B=/tmp/bench-airgap
RUNS=${RUNS:-3}
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
PORT_A=7796
PORT_B=7797
[ -x "$CAIRN" ] || { echo "no Cairn binary at $CAIRN (cargo build --release)" >&2; exit 1; }
rm -rf "$B" && mkdir -p "$B/logs" "$B/npm"
trap lib_cleanup EXIT

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
# timed CMD…: "seconds max_rss_mb" of one run, page cache dropped first.
timed() {
  drop_caches
  /usr/bin/time -f '%e %M' -o "$B/time.out" "$@" > "$B/logs/cmd.out" 2> "$B/logs/cmd.err" \
    || { cat "$B/logs/cmd.err" >&2; exit 1; }
  awk '{printf "%s %.1f\n", $1, $2/1024}' "$B/time.out"
}
serve() {  # serve PORT DATA_DIR FLAGS…: start a node, wait for it, set SERVED to its pid
  local port=$1 data=$2; shift 2
  "$CAIRN" serve --listen "127.0.0.1:$port" --data-dir "$data" --no-p2p "$@" \
    > "$B/logs/cairn-$port.out" 2> "$B/logs/cairn-$port.err" &
  SERVED=$!; PIDS+=("$SERVED")
  wait_for "$SERVED" 60 curl -sf "http://127.0.0.1:$port/healthz"
}
npmrc() {  # npmrc PORT: a user config that sends npm to the node at PORT, whatever the lockfile says
  printf 'registry=http://127.0.0.1:%s/npm/\nreplace-registry-host=always\naudit=false\nfund=false\n' "$1" > "$B/npmrc-$1"
  echo "$B/npmrc-$1"
}
# The installs of step 4 through the node at PORT, each with empty caches; prints seconds.
install_npm() {
  local port=$1 dir=$B/npm-ci-$1
  rm -rf "$dir" "$B/npm-cache" && mkdir -p "$dir" && cp "$B/npm/package.json" "$B/npm/package-lock.json" "$dir/"
  local t0; t0=$(now)
  (cd "$dir" && NPM_CONFIG_USERCONFIG=$(npmrc "$port") npm ci --cache "$B/npm-cache" --loglevel=error) \
    > "$B/logs/npm-$port.log" 2>&1 || { cat "$B/logs/npm-$port.log" >&2; exit 1; }
  elapsed "$t0" "$(now)"
}
install_cargo() {
  local port=$1 home=$B/cargo-home-$1
  rm -rf "$home" && mkdir -p "$home"
  printf '[source.crates-io]\nreplace-with = "cairn"\n[source.cairn]\nregistry = "sparse+http://127.0.0.1:%s/cargo/index/"\n' "$port" > "$home/config.toml"
  local t0; t0=$(now)
  (cd "$HERE/cargo-project" && CARGO_HOME=$home cargo fetch --locked -q) \
    > "$B/logs/cargo-$port.log" 2>&1 || { cat "$B/logs/cargo-$port.log" >&2; exit 1; }
  elapsed "$t0" "$(now)"
}
install_pip() {
  local port=$1 dest=$B/wheels-$1
  rm -rf "$dest"
  local t0; t0=$(now)
  python3 -m pip download --no-cache-dir --only-binary=:all: -q -d "$dest" \
    -r "$HERE/pypi-requirements.txt" --index-url "http://127.0.0.1:$port/pypi/simple/" \
    > "$B/logs/pip-$port.log" 2>&1 || { cat "$B/logs/pip-$port.log" >&2; exit 1; }
  elapsed "$t0" "$(now)"
}

log "node A (online, upstreams from this machine's client settings)"
serve $PORT_A "$B/store-a"
A=$SERVED
grep -E 'upstream' "$B/logs/cairn-$PORT_A.err" | sed 's/^/  /' >&2 || true

log "package-lock.json of bench/npm-project, through A"
cp "$HERE/npm-project/package.json" "$B/npm/"
(cd "$B/npm" && NPM_CONFIG_USERCONFIG=$(npmrc $PORT_A) npm install --package-lock-only --loglevel=error) \
  > "$B/logs/lock.log" 2>&1 || { cat "$B/logs/lock.log" >&2; exit 1; }
npm_packages=$(python3 -c 'import json,sys; print(sum(1 for k in json.load(open(sys.argv[1]))["packages"] if k))' "$B/npm/package-lock.json")
crates=$(grep -c '^\[\[package\]\]' "$HERE/cargo-project/Cargo.lock")
wheels=$(grep -cE '^[A-Za-z0-9]' "$HERE/pypi-requirements.txt")
LOCKS=(--lockfile "npm:$B/npm/package-lock.json" --lockfile "cargo:$HERE/cargo-project/Cargo.lock" --lockfile "pypi:$HERE/pypi-requirements.txt")

log "1. prefetch ($npm_packages npm packages, $crates crates, $wheels Python requirements)"
t0=$(now)
"$CAIRN" prefetch --url "http://127.0.0.1:$PORT_A/" "${LOCKS[@]}" > "$B/logs/prefetch.out" 2> "$B/logs/prefetch.err" \
  || { tail -20 "$B/logs/prefetch.err" >&2; exit 1; }
prefetch_s=$(elapsed "$t0" "$(now)")

log "2. export"
read -r export_s export_rss <<< "$(timed "$CAIRN" export --data-dir "$B/store-a" "${LOCKS[@]}" -o "$B/bundle.car")"
car_bytes=$(stat -c %s "$B/bundle.car")
big_docs=$(find "$B/store-a/meta" -type f -size +2048k | wc -l)
biggest=$(find "$B/store-a/meta" -type f -printf '%s\n' | sort -n | tail -1)

log "3. import into an empty store"
read -r import_s import_rss <<< "$(timed "$CAIRN" import --data-dir "$B/store-b" "$B/bundle.car")"
import_summary=$(grep -E '^  (documents|artifacts):' "$B/logs/cmd.out" | sed 's/^ *//' | paste -sd ';' -)

log "4. node B (--offline, imported store) against A (online, warm)"
serve $PORT_B "$B/store-b" --offline
BN=$SERVED
declare -A T
for run in $(seq "$RUNS"); do
  for port in $PORT_A $PORT_B; do
    T[npm-$port]+="$(install_npm $port) "
    T[cargo-$port]+="$(install_cargo $port) "
    T[pip-$port]+="$(install_pip $port) "
  done
  last() { local v=${1% }; echo "${v##* }"; }
  log "  run $run through B: npm $(last "${T[npm-$PORT_B]}") s, cargo $(last "${T[cargo-$PORT_B]}") s, pip $(last "${T[pip-$PORT_B]}") s"
done
stop_pid "$BN"; stop_pid "$A"

# shellcheck disable=SC2086
{
  echo
  echo "## Air gap: prefetch, export, import, offline installs of real projects ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Machine: $(machine). Command: \`sudo bash bench/airgap.sh REPORT.md\` (RUNS=$RUNS). Cairn: \`$CAIRN\` built from $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'). Upstreams: this machine's client settings."
  echo
  echo "Projects: \`bench/npm-project\` ($npm_packages packages in its lockfile), \`bench/cargo-project\` ($crates crates), \`bench/pypi-requirements.txt\` ($wheels pinned requirements without hashes, wheels for this machine only)."
  echo
  echo "| step | s | peak RSS | notes |"
  echo "|---|---:|---:|---|"
  echo "| prefetch on A (cold, from upstream) | $prefetch_s | | three lockfiles at once |"
  echo "| export | $export_s | $export_rss MB | CAR $(human_bytes "$car_bytes"); $big_docs metadata documents over 2 MiB, the biggest $(human_bytes "${biggest:-0}") |"
  echo "| import (empty store) | $import_s | $import_rss MB | $import_summary |"
  echo
  echo "Installs with empty caches, seconds, median of $RUNS (all runs in brackets):"
  echo
  echo "| client | through A (online, warm) | through B (offline, imported) | B / A |"
  echo "|---|---:|---:|---:|"
  for c in npm cargo pip; do
    a=$(median ${T[$c-$PORT_A]}); b=$(median ${T[$c-$PORT_B]})
    echo "| $c | $a [${T[$c-$PORT_A]% }] | $b [${T[$c-$PORT_B]% }] | $(ratio "$b" "$a") |"
  done
  echo
  echo "B ran with \`--offline\`: every install above was served from the imported bundle alone."
} >> "$OUT"
log "report appended to $OUT"
