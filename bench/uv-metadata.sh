#!/usr/bin/env bash
# bench/uv-metadata.sh: uv resolving through Cairn against an upstream that publishes PEP 658
# core metadata (bench/fake_pypi.py: a local snapshot of pip's upstream for
# bench/pypi-requirements.txt, every project's whole simple page, plus the pinned wheels'
# METADATA). The upstream reachable here publishes none, so there uv must have Cairn fetch whole
# wheels (bench/pypi.sh); against this one both sides read only pages and metadata.
# Measures the wall time of `uv pip compile --no-cache` of the file: direct to the fake, through
# Cairn cold (a fresh store per run) and warm. Appends a Markdown report to $1. Run from the
# repository root after `cargo build --release`:
#
#   bash bench/uv-metadata.sh REPORT.md        (~2 minutes; the first run downloads ~70 MB)
#
# Needs uv (bench/pypi.sh installs it under /tmp/bench-pypi/tools; else `pip install uv` into
# /tmp/bench-uv/tools). Knobs: RUNS=5, CAIRN_BIN (default target/release/cairn).
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/uv-metadata.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
B=/tmp/bench-uv
RUNS=${RUNS:-5}
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
REQS=$HERE/pypi-requirements.txt
FAKE_PORT=8191
CAIRN_PORT=7741
CMDLINE="RUNS=$RUNS${CAIRN_BIN:+ CAIRN_BIN=$CAIRN_BIN} bash bench/uv-metadata.sh $OUT_ARG"

mkdir -p "$B/logs"
REPORT=$B/report.md
: > "$REPORT"
r() { printf '%s\n' "$*" >> "$REPORT"; }
finish() {
  local rc=$?
  set +e
  lib_cleanup
  [ "$rc" -eq 0 ] || r "**The script stopped early (exit $rc).**"
  cat "$REPORT" >> "$OUT"
  log "report appended to $OUT"
}
trap finish EXIT

[ -x "$CAIRN" ] || { log "no Cairn binary at $CAIRN"; exit 1; }
UPSTREAM=$(python3 -m pip config get global.index-url 2>/dev/null || true)
[ -n "$UPSTREAM" ] || UPSTREAM=$(python3 -c 'from pip._internal.models.index import PyPI; print(PyPI.simple_url)')
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(PIP|UV)_' || true)
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 UV_PYTHON_DOWNLOADS=never

UV=/tmp/bench-pypi/tools/bin/uv
if [ ! -x "$UV" ]; then
  UV=$B/tools/bin/uv
  [ -x "$UV" ] || { python3 -m venv "$B/tools" && "$B/tools/bin/python" -m pip install -q --index-url "$UPSTREAM" uv; }
fi

if [ ! -f "$B/fake/pinned.json" ]; then
  log "preparing the fake upstream (downloads the pinned wheels and every project's page)"
  rm -rf "$B/fake"
  python3 "$HERE/fake_pypi.py" prepare --dir "$B/fake" --upstream "$UPSTREAM" --requirements "$REQS" > "$B/logs/prepare.log"
fi
python3 "$HERE/fake_pypi.py" serve --dir "$B/fake" --port $FAKE_PORT > "$B/logs/fake.out" 2> "$B/logs/fake.err" &
FAKE_PID=$!; PIDS+=("$FAKE_PID")
wait_for "$FAKE_PID" 30 grep -q 'fake pypi listening' "$B/logs/fake.out"
FAKE=http://127.0.0.1:$FAKE_PORT/simple/

uv_compile() {  # uv_compile LABEL INDEX -> SECS
  local t0 t1
  t0=$(now)
  "$UV" pip compile --no-cache --no-config --python-version 3.11 --index-url "$2" "$REQS" -o /dev/null \
    > "$B/logs/uv-$1.log" 2>&1 || { tail -n 20 "$B/logs/uv-$1.log" >&2; log "uv failed through $1"; exit 1; }
  t1=$(now)
  SECS=$(elapsed "$t0" "$t1")
  log "uv $1: ${SECS}s"
}
start_node() {  # start_node LABEL DATADIR
  rm -rf "$2"
  "$CAIRN" serve --listen "127.0.0.1:$CAIRN_PORT" --data-dir "$2" --pypi-upstream "$FAKE" \
    > "$B/logs/cairn-$1.out" 2> "$B/logs/cairn-$1.err" &
  CAIRN_PID=$!; PIDS+=("$CAIRN_PID")
  wait_for "$CAIRN_PID" 60 grep -q 'cairn listening on' "$B/logs/cairn-$1.out"
}

declare -A T
uv_compile warm-up "$FAKE"
for i in $(seq 1 "$RUNS"); do
  uv_compile "direct-$i" "$FAKE"; T[direct]="${T[direct]:-} $SECS"
  start_node "$i" "$B/data"
  uv_compile "cairn-cold-$i" "http://127.0.0.1:$CAIRN_PORT/pypi/simple/"; T[cold]="${T[cold]:-} $SECS"
  uv_compile "cairn-warm-$i" "http://127.0.0.1:$CAIRN_PORT/pypi/simple/"; T[warm]="${T[warm]:-} $SECS"
  stop_pid "$CAIRN_PID"
done
fetched=$(grep -c "metadata fetched" "$B/logs/cairn-1.err" || true)
direct=$(median ${T[direct]}); cold=$(median ${T[cold]}); warm=$(median ${T[warm]})
r "## uv against an upstream publishing PEP 658 metadata — $(date -u '+%Y-%m-%d %H:%M UTC')"
r ""
r "\`$CMDLINE\`; $(machine). \`uv pip compile --no-cache --no-config --python-version 3.11\` of \`bench/pypi-requirements.txt\` against \`bench/fake_pypi.py\` ($(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$B/fake/pinned.json") projects, whole pages, core metadata for the pinned wheels), seconds, median of $RUNS. Cold = a fresh store per run ($fetched documents fetched by the first); warm = the next run against it."
r ""
r "| configuration | median s | runs | vs direct |"
r "|---|---:|---|---:|"
r "| direct to the fake | $direct | $(echo ${T[direct]} | sed 's/ /, /g') | 1.00× |"
r "| Cairn cold | $cold | $(echo ${T[cold]} | sed 's/ /, /g') | $(ratio "$cold" "$direct")× |"
r "| Cairn warm | $warm | $(echo ${T[warm]} | sed 's/ /, /g') | $(ratio "$warm" "$direct")× |"
r ""
