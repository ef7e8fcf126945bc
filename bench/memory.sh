#!/usr/bin/env bash
# bench/memory.sh: what the in-memory caches' budget (--memory-budget) does to a node's memory
# and to warm installs. For each budget (BUDGETS, default "default 32M 16M"), a fresh node in
# front of this machine's npm registry (as npm is configured here) installs bench/npm-project
# (package.json; a few hundred packages) cold, then `npm ci` from the lockfile with an empty npm
# cache RUNS times (every document and tarball a hit). Reports the node's RSS at start, idle
# after the cold install, and idle IDLE_SECS after the warm installs (jemalloc hands freed
# memory back on a timer) beside what the allocator says it holds and keeps resident then
# (`cairn_memory_*_bytes`), with the median warm `npm ci` time. Appends Markdown to $1.
#
#   bash bench/memory.sh REPORT.md     (after `cargo build --release`; ~4 min per budget)
#
# Knobs: BUDGETS, RUNS=3, IDLE_SECS=20, CAIRN_BIN (default target/release/cairn).
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/memory.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
B=/tmp/bench-memory
RUNS=${RUNS:-3}
IDLE_SECS=${IDLE_SECS:-20}
BUDGETS=${BUDGETS:-default 32M 16M}
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
[ -x "$CAIRN" ] || { echo "no Cairn binary at $CAIRN (cargo build --release)" >&2; exit 1; }
rm -rf "$B" && mkdir -p "$B/logs"
# On the way out: stop what was started, and drop the stores and npm caches, keeping the logs.
trap 'lib_cleanup; find "$B" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +' EXIT
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

ROWS=()
port=7830
for budget in $BUDGETS; do
  port=$((port + 1))
  dir=$B/$budget
  mkdir -p "$dir/app"
  args=()
  [ "$budget" = default ] || args=(--memory-budget "$budget")
  "$CAIRN" serve --data-dir "$dir/data" --listen "127.0.0.1:$port" --no-p2p "${args[@]}" \
    > "$B/logs/cairn-$budget.out" 2> "$B/logs/cairn-$budget.err" &
  CAIRN_PID=$!; PIDS+=("$CAIRN_PID")
  wait_for "$CAIRN_PID" 30 grep -q 'cairn listening on' "$B/logs/cairn-$budget.out"
  start=$(rss_mb "$CAIRN_PID")
  cp "$REPO/bench/npm-project/package.json" "$dir/app/"
  npm_env=(env npm_config_registry="http://127.0.0.1:$port/npm/" npm_config_audit=false
    npm_config_fund=false npm_config_update_notifier=false)
  t0=$(now)
  (cd "$dir/app" && "${npm_env[@]}" npm_config_cache="$dir/cache-cold" \
    npm install --ignore-scripts > "$B/logs/npm-$budget-cold.log" 2>&1)
  cold=$(elapsed "$t0" "$(now)")
  sleep 3
  after_cold=$(rss_mb "$CAIRN_PID")
  warm=()
  for run in $(seq "$RUNS"); do
    rm -rf "$dir/app/node_modules" "$dir/cache-$run"
    t0=$(now)
    (cd "$dir/app" && "${npm_env[@]}" npm_config_cache="$dir/cache-$run" \
      npm ci --ignore-scripts > "$B/logs/npm-$budget-$run.log" 2>&1)
    warm+=("$(elapsed "$t0" "$(now)")")
  done
  peak=$(awk '/^VmHWM/{printf "%.1f", $2/1024}' "/proc/$CAIRN_PID/status")
  sleep "$IDLE_SECS"
  idle=$(rss_mb "$CAIRN_PID")
  # The allocator's view at the same moment (refreshed every 5 s): held against resident.
  read -r held kept < <(curl -sf "http://127.0.0.1:$port/metrics" | awk '
    /^cairn_memory_allocated_bytes /{a=$2} /^cairn_memory_resident_bytes /{r=$2}
    END{printf "%.1f %.1f\n", a/1048576, r/1048576}')
  packages=$(find "$dir/app/node_modules" -name package.json -path '*/node_modules/*/package.json' | wc -l)
  log "budget $budget: start $start MB, after cold $after_cold MB, warm ${warm[*]} s, peak $peak MB, idle $idle MB (allocator: $held MB held, $kept MB resident; $packages package.json files)"
  ROWS+=("| $budget | $start | $cold | $after_cold | $(median "${warm[@]}") | $peak | $idle | $held | $kept |")
  stop_pid "$CAIRN_PID"
done

{
  echo "### The in-memory caches' budget"
  echo
  echo "\`RUNS=$RUNS IDLE_SECS=$IDLE_SECS bash bench/memory.sh REPORT.md\`. Machine: $(machine). bench/npm-project through a fresh node per budget: a cold \`npm install\`, then \`npm ci\` with an empty npm cache (every request a hit), $RUNS times; the node's RSS in MB."
  echo
  echo "| budget | RSS at start | cold install s | RSS idle after it | warm \`npm ci\` s (median) | peak RSS | RSS ${IDLE_SECS} s idle after | then held (allocator) | then resident (allocator) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${ROWS[@]}"
  echo
} >> "$OUT"
log "report appended to $OUT"
