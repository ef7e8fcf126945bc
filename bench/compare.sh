#!/usr/bin/env bash
# bench/compare.sh: two Cairn binaries side by side in one run, on what a change to the core
# must not slow down: installs through a warm cache and hit throughput, for npm, cargo and PyPI.
#
#   sudo bash bench/compare.sh OLD_BIN NEW_BIN REPORT.md        (~15 minutes)
#
# Each binary gets its own data directory, filled once by a cold install of the three bench
# projects (bench/npm-project, bench/cargo-project, bench/pypi-requirements.txt) from the
# upstreams Cairn discovers in the machine's client configuration. Then RUNS rounds, each
# running the old binary, then the new one, on its warm store: a clean `npm install`, `cargo
# fetch --locked` with an empty CARGO_HOME, `pip download` of the requirements with caches off,
# then wrk (c=64, WRK_SECS) on a cached packument, tarball, index file, simple page and wheel.
# Interleaving puts both binaries under the same machine noise; medians, and new/old ratios
# (times: below 1 is faster; throughput: above 1 is faster). Cold installs are timed once per
# binary and depend on the network: they are shown, not compared.
#
# Knobs: RUNS=5, WRK_SECS=8, LABEL_OLD, LABEL_NEW (default: the binaries' paths).
set -euo pipefail

OLD=${1:?usage: bash bench/compare.sh OLD_BIN NEW_BIN REPORT.md}
NEW=${2:?usage: bash bench/compare.sh OLD_BIN NEW_BIN REPORT.md}
OUT_ARG=${3:?usage: bash bench/compare.sh OLD_BIN NEW_BIN REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
B=/tmp/bench-compare
RUNS=${RUNS:-5}
WRK_SECS=${WRK_SECS:-8}
LABEL_OLD=${LABEL_OLD:-$OLD}
LABEL_NEW=${LABEL_NEW:-$NEW}
PORT=7731
BASE=http://127.0.0.1:$PORT
NPM_ACCEPT='application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*'
PIP_ACCEPT='application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01'
PKUM=express TGZ=(typescript 5.9.3) INDEX_FILE=se/rd/serde PAGE=requests

# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
trap lib_cleanup EXIT
for bin in "$OLD" "$NEW"; do [ -x "$bin" ] || { log "no Cairn binary at $bin"; exit 1; }; done
need_tools wrk wrk
rm -rf "$B" && mkdir -p "$B"/{logs,tmp,data-old,data-new}
NREQS=$(grep -cE '^[A-Za-z0-9]' "$HERE/pypi-requirements.txt")
NCRATES=$(grep -c '^checksum' "$HERE/cargo-project/Cargo.lock")

serve() {  # serve old|new: start that binary on its data directory
  local which=$1 bin=$OLD
  [ "$which" = new ] && bin=$NEW
  CAIRN=$bin start_cairn "$which" "$B/data-$which" --listen "127.0.0.1:$PORT" --no-p2p --metadata-ttl 1h
}
halt() { stop_pid "$CAIRN_PID"; PIDS=(); }

timed() {  # timed LOG CMD...: seconds CMD took (FAIL when it failed)
  local log=$1 t0 t1; shift
  t0=$(now)
  if "$@" > "$B/logs/$log.log" 2>&1; then t1=$(now); elapsed "$t0" "$t1"; else echo FAIL; tail -n 5 "$B/logs/$log.log" >&2; fi
}
npm_install() {
  local dir=$B/tmp/npm cache=$B/tmp/npm-cache
  rm -rf "$dir" "$cache" && mkdir -p "$dir" && cp "$HERE/npm-project/package.json" "$dir/"
  printf 'registry=%s/npm/\nfund=false\naudit=false\nupdate-notifier=false\n' "$BASE" > "$B/tmp/npmrc"
  (cd "$dir" && NPM_CONFIG_USERCONFIG=$B/tmp/npmrc npm install --no-package-lock --cache "$cache" --loglevel=warn)
}
cargo_fetch() {
  local home=$B/tmp/cargo-home
  rm -rf "$home" && mkdir -p "$home"
  printf '[source.crates-io]\nreplace-with = "m"\n[source.m]\nregistry = "sparse+%s/cargo/index/"\n' "$BASE" > "$home/config.toml"
  (cd "$HERE/cargo-project" && CARGO_HOME=$home cargo fetch --locked -q)
  [ "$(ls "$home"/registry/cache/*/ | wc -l)" -eq "$NCRATES" ]
}
pip_download() {
  local dest=$B/tmp/pip
  rm -rf "$dest"
  PIP_CONFIG_FILE=/dev/null python3 -m pip download --no-cache-dir --only-binary=:all: -q -d "$dest" \
    -r "$HERE/pypi-requirements.txt" --index-url "$BASE/pypi/simple/"
}

declare -A T WRPS WP99 WERR   # T[client-which]="s1 s2 …"
add() { T[$1]="${T[$1]:-} $2"; }
installs() {  # installs WHICH PHASE
  add "npm-$2-$1" "$(timed "npm-$2-$1" npm_install)"
  add "cargo-$2-$1" "$(timed "cargo-$2-$1" cargo_fetch)"
  add "pip-$2-$1" "$(timed "pip-$2-$1" pip_download)"
  log "$1 $2: npm ${T[npm-$2-$1]##* }s, cargo ${T[cargo-$2-$1]##* }s, pip ${T[pip-$2-$1]##* }s"
}

log "cold installs fill each store (network-bound)"
for which in old new; do serve "$which"; installs "$which" cold; halt; done

log "the URLs under wrk"
serve old
TGZ_URL=$(curl -sf -H "Accept: $NPM_ACCEPT" "$BASE/npm/${TGZ[0]}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["versions"][sys.argv[1]]["dist"]["tarball"])' "${TGZ[1]}")
WHEEL_URL=$(curl -sf -H 'Accept: application/vnd.pypi.simple.v1+json' "$BASE/pypi/simple/$PAGE/" | python3 -c '
import json, sys
from urllib.parse import urljoin
for f in json.load(sys.stdin)["files"]:
    if f["filename"].endswith(".whl"): print(urljoin(sys.argv[1], f["url"]))' "$BASE/pypi/simple/$PAGE/" | tail -1)
halt
[ -n "$TGZ_URL" ] && [ -n "$WHEEL_URL" ] || { log "no tarball or wheel URL"; exit 1; }
# Each target is warmed in both stores before the rounds.
TARGETS=(
  "packument|$BASE/npm/$PKUM|Accept: $NPM_ACCEPT|Accept-Encoding: gzip"
  "tarball|$TGZ_URL|"
  "index-file|$BASE/cargo/index/$INDEX_FILE|Accept-Encoding: gzip"
  "simple-page|$BASE/pypi/simple/$PAGE/|Accept: $PIP_ACCEPT|Accept-Encoding: gzip, deflate"
  "wheel|$WHEEL_URL|"
)
for which in old new; do
  serve "$which"
  for t in "${TARGETS[@]}"; do
    curl -sf -o /dev/null "$(cut -d'|' -f2 <<< "$t")" || { log "cannot warm $t"; exit 1; }
  done
  halt
done

for round in $(seq 1 "$RUNS"); do
  for which in old new; do
    log "round $round/$RUNS: $which"
    serve "$which"
    installs "$which" warm
    for t in "${TARGETS[@]}"; do
      IFS='|' read -r name url h1 h2 <<< "$t"
      hdrs=$h1${h2:+|$h2}
      run_wrk "$name-$which" 64 "$url" "$hdrs"
    done
    halt
  done
done

med() { median ${T[$1]}; }
wmed() { median ${WRPS[$1]}; }
pmed() { median ${WP99[$1]}; }
{
  echo "### Before and after, side by side"
  echo
  echo "\`RUNS=$RUNS WRK_SECS=$WRK_SECS sudo bash bench/compare.sh OLD NEW REPORT.md\`; old: $LABEL_OLD, new: $LABEL_NEW. Machine: $(machine). Rounds interleave the two binaries (old, new, old, new…), each on its own warm store, \`--no-p2p --metadata-ttl 1h\`."
  echo
  echo "Installs through a warm Cairn (seconds, median of $RUNS; every run in brackets):"
  echo
  echo "| client | old | new | new/old |"
  echo "|---|---|---|---|"
  for c in npm cargo pip; do
    case $c in
      npm) what="npm install, bench/npm-project, empty npm cache" ;;
      cargo) what="cargo fetch --locked, $NCRATES crates, empty CARGO_HOME" ;;
      pip) what="pip download, $NREQS pinned requirements, caches off" ;;
    esac
    echo "| $what | $(med "$c-warm-old") [${T[$c-warm-old]# }] | $(med "$c-warm-new") [${T[$c-warm-new]# }] | $(ratio "$(med "$c-warm-new")" "$(med "$c-warm-old")") |"
  done
  echo
  echo "Hits, wrk c=64 for ${WRK_SECS} s (req/s and p99 ms, medians of $RUNS):"
  echo
  echo "| resource | old req/s | new req/s | new/old | old p99 | new p99 | errors (old, new) |"
  echo "|---|---|---|---|---|---|---|"
  for t in "${TARGETS[@]}"; do
    name=${t%%|*}
    echo "| $name | $(wmed "$name-old") | $(wmed "$name-new") | $(ratio "$(wmed "$name-new")" "$(wmed "$name-old")") | $(pmed "$name-old") | $(pmed "$name-new") | ${WERR[$name-old]:-0}, ${WERR[$name-new]:-0} |"
  done
  echo
  echo "Cold installs (one run each, network-bound, not compared): old npm ${T[npm-cold-old]# }s, cargo ${T[cargo-cold-old]# }s, pip ${T[pip-cold-old]# }s; new npm ${T[npm-cold-new]# }s, cargo ${T[cargo-cold-new]# }s, pip ${T[pip-cold-new]# }s."
  echo
} >> "$OUT"
log "report appended to $OUT"
