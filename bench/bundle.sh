#!/usr/bin/env bash
# bench/bundle.sh: CAR bundles. Measures, in one run, for artifacts of SIZES MiB (default
# "256 2048"): `cairn export --all` of a store holding one artifact of that size against a plain
# `cp` of the artifact's bytes, and `cairn import` of the bundle into an empty store against a
# `cp` of the bundle, with each command's peak RSS (GNU time), so RSS can be seen to stay flat
# across sizes. The page cache is dropped before every timed command (cold reads, as a bundle
# carried on a drive is). Medians of RUNS (default 3). Appends a Markdown report to $1.
#
#   sudo bash bench/bundle.sh BENCHMARKS-run.md      (after `cargo build --release`; ~5 min)
#
# The artifact is put in the store the way any artifact is: fetched through Cairn from a local
# fake npm upstream (bench/fake_upstream.py) serving random bytes.
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/bundle.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
B=/tmp/bench-bundle
RUNS=${RUNS:-3}
SIZES=${SIZES:-"256 2048"}
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
FAKE_PORT=8095
CAIRN_PORT=7795
[ -x "$CAIRN" ] || { echo "no Cairn binary at $CAIRN (cargo build --release)" >&2; exit 1; }
rm -rf "$B" && mkdir -p "$B/logs"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
# timed CMD…: prints "seconds max_rss_mb" of one run with a cold page cache.
timed() {
  drop_caches
  /usr/bin/time -f '%e %M' -o "$B/time.out" "$@" > "$B/logs/cmd.out" 2> "$B/logs/cmd.err" \
    || { cat "$B/logs/cmd.err" >&2; exit 1; }
  awk '{printf "%s %.1f\n", $1, $2/1024}' "$B/time.out"
}

{
  echo
  echo "## CAR bundles: export and import against cp ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo). Command: \`sudo bash bench/bundle.sh REPORT.md\` (RUNS=$RUNS, SIZES=\"$SIZES\"). Page cache dropped before each timed command; medians."
  echo
  echo "| artifact | export s | cp file s | export / cp throughput | export peak RSS | import s | cp CAR s | import / cp throughput | import peak RSS |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
} >> "$OUT"

for mib in $SIZES; do
  log "size ${mib} MiB: fake upstream"
  python3 "$HERE/fake_upstream.py" --port $FAKE_PORT --dir "$B/huge-$mib" --size-mib "$mib" \
    > "$B/logs/fake.out" 2> "$B/logs/fake.err" &
  FAKE=$!; PIDS+=("$FAKE")
  for _ in $(seq 600); do grep -q listening "$B/logs/fake.out" 2>/dev/null && break; sleep 1; done
  store=$B/store-$mib
  "$CAIRN" serve --listen 127.0.0.1:$CAIRN_PORT --data-dir "$store" \
    --npm-upstream "http://127.0.0.1:$FAKE_PORT/" --cargo-upstream http://127.0.0.1:9/ \
    --pypi-upstream http://127.0.0.1:9/ --apt-upstream x=http://127.0.0.1:9/ \
    --apt-keyring x=/usr/share/keyrings/debian-archive-keyring.gpg > "$B/logs/cairn.out" 2> "$B/logs/cairn.err" &
  SERVE=$!; PIDS+=("$SERVE")
  for _ in $(seq 100); do grep -q 'listening' "$B/logs/cairn.out" 2>/dev/null && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.1:$CAIRN_PORT/npm/huge"
  curl -sf -o /dev/null "http://127.0.0.1:$CAIRN_PORT/npm/huge/-/huge-1.0.0.tgz"
  kill "$SERVE"; wait "$SERVE" 2>/dev/null || true
  kill "$FAKE"; wait "$FAKE" 2>/dev/null || true
  blob=$(find "$store/blobs" -type f -size +1M | head -1)
  bytes=$(stat -c %s "$blob")
  ex=(); exr=(); cpf=(); im=(); imr=(); cpc=()
  for run in $(seq "$RUNS"); do
    rm -f "$B/bundle.car" "$B/copy.bin"
    read -r s r <<< "$(timed "$CAIRN" export --data-dir "$store" --all -o "$B/bundle.car")"; ex+=("$s"); exr+=("$r")
    read -r s _ <<< "$(timed cp "$blob" "$B/copy.bin")"; cpf+=("$s")
    rm -rf "$B/imported" "$B/copy.car"
    read -r s r <<< "$(timed "$CAIRN" import --data-dir "$B/imported" "$B/bundle.car")"; im+=("$s"); imr+=("$r")
    read -r s _ <<< "$(timed cp "$B/bundle.car" "$B/copy.car")"; cpc+=("$s")
    log "  run $run: export ${ex[-1]}s (${exr[-1]} MB), cp ${cpf[-1]}s, import ${im[-1]}s (${imr[-1]} MB), cp car ${cpc[-1]}s"
  done
  car_bytes=$(stat -c %s "$B/bundle.car")
  e=$(median "${ex[@]}"); c=$(median "${cpf[@]}"); i=$(median "${im[@]}"); cc=$(median "${cpc[@]}")
  echo "| ${mib} MiB ($(awk -v b="$car_bytes" 'BEGIN{printf "%.0f", b/1048576}') MiB CAR) | $e | $c | $(ratio "$c" "$e") | $(median "${exr[@]}") MB | $i | $cc | $(ratio "$cc" "$i") | $(median "${imr[@]}") MB |" >> "$OUT"
  rm -rf "$store" "$B/imported" "$B/bundle.car" "$B/copy.bin" "$B/copy.car"
done
{
  echo
  echo "Throughput ratio = cp's time / Cairn's time on the same bytes (goal ≥ 0.50 for each). Export reads the flat file once (the leaves are named by the inner nodes, not hashed); import verifies every block against its CID, the whole file against its registry digest (sha512 here) and the rebuilt DAG against the snapshot, and fsyncs before anything is indexed."
} >> "$OUT"
log "report appended to $OUT"
