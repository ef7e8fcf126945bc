#!/usr/bin/env bash
# bench/apt.sh: Cairn as an apt cache, side by side with apt-cacher-ng and an nginx
# proxy_cache, in one run. Measures:
#   - wall time of `apt-get update` + `apt-get install --download-only -y` of the packages in
#     bench/apt-packages.txt (bookworm main), each run with a fresh private apt state (own
#     APT_CONFIG, empty dpkg status so every dependency is downloaded): direct to the archive,
#     through Cairn cold (empty store) and warm, through apt-cacher-ng cold and warm (used as
#     its docs say: an HTTP proxy, sources naming the archive itself), and through an nginx
#     proxy_cache in front of the archive, cold and warm (a plain HTTP cache: the floor);
#   - wrk hit throughput and p99 (c=1, c=64) on a cached .deb (the one closest to 300 KB), the
#     cached dists/bookworm/InRelease and the cached by-hash Packages.xz: Cairn vs
#     apt-cacher-ng (path-style URLs on its port) vs nginx serving the same bytes from disk;
#   - RSS of Cairn and apt-cacher-ng: idle after start, after the warm runs, peak under c=64.
# Appends a Markdown report to $1. Run from the repository root after `cargo build --release`:
#
#   sudo bash bench/apt.sh BENCHMARKS-run.md        (~5 minutes on 2 cores)
#
# The archive is found as Cairn finds it: the first `deb` archive in the machine's apt sources
# whose path ends in /debian. Installs nginx, wrk and apt-cacher-ng (apt) if missing (the
# apt-cacher-ng system service is left stopped and disabled; a private instance runs here).
# All load targets 127.0.0.1. Scratch space: /tmp/bench-apt. Knobs: RUNS=3, WRK_SECS=10,
# CAIRN_BIN (default target/release/cairn).
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/apt.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
B=/tmp/bench-apt
RUNS=${RUNS:-3}
WRK_SECS=${WRK_SECS:-10}
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
ACNG=/usr/sbin/apt-cacher-ng
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
SUITE=bookworm
COMPONENT=main
CMDLINE="RUNS=$RUNS WRK_SECS=$WRK_SECS${CAIRN_BIN:+ CAIRN_BIN=$CAIRN_BIN} bash bench/apt.sh $OUT_ARG"

CAIRN_PORT=7721       # Cairn (sources -> /apt/debian)
ACNG_PORT=3152        # private apt-cacher-ng (apt proxy; path-style URLs for wrk)
NGX_CACHE_PORT=8097   # nginx proxy_cache in front of the archive
NGX_STATIC_PORT=8098  # nginx serving the same bytes from disk

export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
PKGS=$(grep -vE '^[[:space:]]*(#|$)' "$HERE/apt-packages.txt" | tr '\n' ' ')
NPKGS=$(echo "$PKGS" | wc -w)

rm -rf "$B"
mkdir -p "$B"/{logs,apt,www,acng}
REPORT=$B/report.md
: > "$REPORT"
r() { printf '%s\n' "$*" >> "$REPORT"; }

UP_HOST=
sanitize() {  # keep the archive's host name out of the report
  if [ -n "$UP_HOST" ]; then sed "s#${UP_HOST//./\\.}#<debian-archive>#g"; else cat; fi
}
finish() {
  local rc=$?
  set +e
  lib_cleanup
  if [ "$rc" -ne 0 ]; then
    [ -s "$REPORT" ] || r "## apt benchmark — $(date -u '+%Y-%m-%d %H:%M UTC') (\`$CMDLINE\`)"
    r ""; r "**The script stopped early (exit $rc); results above are partial.** Last log lines:"; r '```'
    tail -n 20 "$B/logs/script.log" 2>/dev/null >> "$REPORT"; r '```'
  fi
  sanitize < "$REPORT" >> "$OUT"
  log "report appended to $OUT"
}
trap finish EXIT
exec 2> >(tee -a "$B/logs/script.log" >&2)
die() { log "FAILED: $*"; exit 1; }

# ---------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------
log "setup"
need_tools nginx nginx wrk
need_tools wrk nginx wrk
if [ ! -x "$ACNG" ]; then
  [ "$(id -u)" -eq 0 ] || die "apt-cacher-ng missing: run as root (sudo) to install it"
  log "installing apt-cacher-ng"
  echo 'apt-cacher-ng apt-cacher-ng/tunnelenable boolean false' | debconf-set-selections
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq apt-cacher-ng >/dev/null
  # Its package starts (or tries to start) a system service; this run uses a private one.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now apt-cacher-ng >/dev/null 2>&1 || true
  else
    service apt-cacher-ng stop >/dev/null 2>&1 || true
    update-rc.d apt-cacher-ng disable >/dev/null 2>&1 || true
  fi
fi
[ -x "$CAIRN" ] || die "no Cairn binary at $CAIRN (cargo build --release, or set CAIRN_BIN)"
"$CAIRN" serve --help 2>/dev/null | grep -q -- '--apt-upstream' || die "$CAIRN has no apt support (--apt-upstream)"
ARCHIVE=$(apt_archive_url)
[ -n "$ARCHIVE" ] || die "no deb archive ending in /debian in /etc/apt/sources.list{,.d}"
ARCHIVE_HOSTPATH=${ARCHIVE#*://}             # host[:port]/…/debian: apt-cacher-ng's path-style prefix
UP_HOST=${ARCHIVE_HOSTPATH%%/*}; UP_HOST=${UP_HOST%%:*}
ARCH=$(dpkg --print-architecture)
for port in $CAIRN_PORT $ACNG_PORT $NGX_CACHE_PORT $NGX_STATIC_PORT; do
  port_free "$port" || die "port $port is already in use"
done
src_line() { echo "deb [signed-by=$KEYRING] $1 $SUITE $COMPONENT"; }

# The plan (untimed): what a clean install of the list downloads, straight from the archive.
log "plan: resolving $NPKGS packages against the archive (private apt state)"
PLAN=$B/apt/plan
apt_private "$PLAN" "$(src_line "$ARCHIVE")"
apt_run "$PLAN" update > "$B/logs/apt-plan.log" 2>&1 || { cat "$B/logs/apt-plan.log" >&2; die "apt-get update (plan)"; }
apt_run "$PLAN" install --download-only -y --print-uris -qq $PKGS > "$B/plan-uris.txt" 2>> "$B/logs/apt-plan.log" ||
  { cat "$B/logs/apt-plan.log" >&2; die "the package list does not resolve"; }
! grep -qE '^(W|E|Err):' "$B/logs/apt-plan.log" || { cat "$B/logs/apt-plan.log" >&2; die "apt warnings/errors in the plan"; }
NDEBS=$(wc -l < "$B/plan-uris.txt")
DEB_BYTES=$(awk '{s+=$3} END{print s+0}' "$B/plan-uris.txt")
[ "$NDEBS" -gt 0 ] || die "nothing to download"
# The .deb under wrk: closest to 300 KB (names without percent-escapes, to keep URLs simple).
DEB_PATH=$(awk -v pre="$ARCHIVE/" '$1 !~ /%/ {u=$1; gsub(/'"'"'/, "", u); if (index(u, pre) != 1) next
    d=$3-307200; if (d<0) d=-d; print d, substr(u, length(pre)+1)}' "$B/plan-uris.txt" | sort -n | head -1 | awk '{print $2}')
[ -n "$DEB_PATH" ] || die "no .deb URL under the archive in the plan"
DEB_SIZE=$(awk -v p="$DEB_PATH" 'index($1, p) {print $3; exit}' "$B/plan-uris.txt")
# The by-hash name of Packages.xz, from the InRelease the plan fetched.
INREL=$(ls "$PLAN"/state/lists/*_dists_${SUITE}_InRelease | head -1)
PXZ_HASH=$(awk -v f="$COMPONENT/binary-$ARCH/Packages.xz" '/^SHA256:/{s=1; next} /^[^ ]/{s=0} s && $3==f {print $1; exit}' "$INREL")
[ -n "$PXZ_HASH" ] || die "no SHA256 for $COMPONENT/binary-$ARCH/Packages.xz in InRelease"
BYHASH_PATH=dists/$SUITE/$COMPONENT/binary-$ARCH/by-hash/SHA256/$PXZ_HASH
INREL_PATH=dists/$SUITE/InRelease
log "plan: $NDEBS .debs, $(human_bytes "$DEB_BYTES"); wrk .deb: $(basename "$DEB_PATH") ($(human_bytes "$DEB_SIZE"))"
rm -rf "$PLAN"

# ---------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------
CAIRN_DATA=$B/cairn-data
cairn_up() {  # cairn_up LABEL: Cairn on the current $CAIRN_DATA
  start_cairn "$1" "$CAIRN_DATA" --listen "127.0.0.1:$CAIRN_PORT" --apt-upstream "debian=$ARCHIVE" \
    --npm-upstream http://127.0.0.1:9/ --cargo-upstream http://127.0.0.1:9/ --pypi-upstream http://127.0.0.1:9/
}

ACNG_PID=
acng_up() {  # acng_up LABEL: private apt-cacher-ng on an empty cache
  local a=$B/acng
  rm -rf "$a/cache" "$a/log" "$a/conf"; mkdir -p "$a/cache" "$a/log" "$a/conf"
  cp -rL /etc/apt-cacher-ng/. "$a/conf/"
  # The Debian remap's backend is the archive under test (the package derives the same from
  # apt's sources; written here so the private instance never depends on that).
  echo "$ARCHIVE/" > "$a/conf/backends_debian"
  "$ACNG" -c "$a/conf" ForeGround=1 Port=$ACNG_PORT BindAddress=127.0.0.1 CacheDir="$a/cache" \
    LogDir="$a/log" SocketPath="$a/socket" PidFile="$a/pid" > "$B/logs/acng-$1.out" 2>&1 &
  ACNG_PID=$!
  PIDS+=("$ACNG_PID")
  wait_for "$ACNG_PID" 30 curl -sf -o /dev/null "http://127.0.0.1:$ACNG_PORT/acng-report.html"
}

NGX=$B/nginx
write_nginx_conf() {
  mkdir -p "$NGX"
  {
    nginx_common "$NGX"
    echo "http {"
    nginx_http_common "$NGX"
    cat <<EOF
  proxy_cache_path $NGX/cache levels=1:2 keys_zone=apt:32m max_size=5g inactive=1d use_temp_path=off;
  # apt's floor: a caching reverse proxy in front of the archive, never revalidating.
  server {
    listen 127.0.0.1:$NGX_CACHE_PORT;
    location /debian/ {
      proxy_pass $ARCHIVE/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_server_name on;
      proxy_cache apt;
      proxy_cache_valid 200 1d;
      proxy_cache_valid any 1m;
      proxy_ignore_headers Cache-Control Expires Set-Cookie;
      proxy_cache_lock on;
      add_header X-Cache-Status \$upstream_cache_status;
    }
  }
  # The same bytes Cairn serves, as static files.
  server {
    listen 127.0.0.1:$NGX_STATIC_PORT;
    root $B/www;
  }
}
EOF
  } > "$NGX/nginx.conf"
}
nginx_fresh() { stop_nginx; rm -rf "$NGX/cache"; start_nginx "$NGX" "http://127.0.0.1:$NGX_STATIC_PORT/"; }

# ---------------------------------------------------------------------------------------
# apt runs
# ---------------------------------------------------------------------------------------
APT_SECS=
apt_once() {  # apt_once LABEL SOURCE_URL [PROXY] -> APT_SECS; dies on any apt W:/E:/Err:
  local label=$1 url=$2 proxy=${3:-DIRECT} dir=$B/apt/$1 lg=$B/logs/apt-$1.log status=0 t0 t1 n
  apt_private "$dir" "$(src_line "$url")" "$proxy"
  t0=$(now)
  { apt_run "$dir" update && apt_run "$dir" install --download-only -y $PKGS; } > "$lg" 2>&1 || status=$?
  t1=$(now)
  if [ "$status" -ne 0 ] || grep -qE '^(W|E|Err):' "$lg"; then
    if grep -qE '^(W|E|Err):' "$lg"; then
      log "$(grep -cE '^(W|E|Err):' "$lg") apt W:/E:/Err: lines through $label; the first ones:"
      { grep -E '^(W|E):' "$lg" || grep -E '^Err:' "$lg"; } | head -n 8
    else tail -n 10 "$lg"; fi | sanitize >&2
    die "apt-get through $label (exit $status): see $lg"
  fi
  n=$(find "$dir/cache/archives" -maxdepth 1 -name '*.deb' | wc -l)
  [ "$n" -eq "$NDEBS" ] || die "$label: downloaded $n .debs, expected $NDEBS"
  rm -rf "$dir"
  APT_SECS=$(elapsed "$t0" "$t1")
  log "$label: ${APT_SECS}s"
}

declare -A T
add() { T[$1]="${T[$1]:-} $2"; }
CAIRN_START_RSS=; ACNG_START_RSS=
write_nginx_conf
log "apt runs: $RUNS rounds of direct / Cairn cold+warm / apt-cacher-ng cold+warm / nginx cold+warm"
for i in $(seq 1 "$RUNS"); do
  apt_once "direct-$i" "$ARCHIVE"; add direct "$APT_SECS"

  rm -rf "$CAIRN_DATA"; cairn_up "$i"
  [ -n "$CAIRN_START_RSS" ] || { sleep 1; CAIRN_START_RSS=$(rss_mb "$CAIRN_PID"); }
  apt_once "cairn-cold-$i" "http://127.0.0.1:$CAIRN_PORT/apt/debian"; add cairn_cold "$APT_SECS"
  apt_once "cairn-warm-$i" "http://127.0.0.1:$CAIRN_PORT/apt/debian"; add cairn_warm "$APT_SECS"
  [ "$i" -eq "$RUNS" ] || stop_pid "$CAIRN_PID"

  acng_up "$i"
  [ -n "$ACNG_START_RSS" ] || { sleep 1; ACNG_START_RSS=$(rss_mb "$ACNG_PID"); }
  apt_once "acng-cold-$i" "$ARCHIVE" "http://127.0.0.1:$ACNG_PORT"; add acng_cold "$APT_SECS"
  apt_once "acng-warm-$i" "$ARCHIVE" "http://127.0.0.1:$ACNG_PORT"; add acng_warm "$APT_SECS"
  [ "$i" -eq "$RUNS" ] || stop_pid "$ACNG_PID"

  nginx_fresh
  apt_once "nginx-cold-$i" "http://127.0.0.1:$NGX_CACHE_PORT/debian"; add nginx_cold "$APT_SECS"
  apt_once "nginx-warm-$i" "http://127.0.0.1:$NGX_CACHE_PORT/debian"; add nginx_warm "$APT_SECS"
done
sleep 2
CAIRN_WARM_RSS=$(rss_mb "$CAIRN_PID"); ACNG_WARM_RSS=$(rss_mb "$ACNG_PID")

# ---------------------------------------------------------------------------------------
# wrk: hits on the caches the last round filled
# ---------------------------------------------------------------------------------------
log "wrk: fetching the bytes Cairn serves; checking apt-cacher-ng serves the same"
RES=(deb inrelease byhash)
declare -A RPATH URL
RPATH[deb]=$DEB_PATH; RPATH[inrelease]=$INREL_PATH; RPATH[byhash]=$BYHASH_PATH
for res in "${RES[@]}"; do
  p=${RPATH[$res]}
  URL[$res,cairn]="http://127.0.0.1:$CAIRN_PORT/apt/debian/$p"
  URL[$res,acng]="http://127.0.0.1:$ACNG_PORT/$ARCHIVE_HOSTPATH/$p"
  URL[$res,nginx]="http://127.0.0.1:$NGX_STATIC_PORT/debian/$p"
  mkdir -p "$B/www/debian/$(dirname "$p")"
  curl -sf -o "$B/www/debian/$p" "${URL[$res,cairn]}" || die "Cairn does not serve $p"
  curl -sf -o "$B/acng/$res.body" "${URL[$res,acng]}" || die "apt-cacher-ng does not serve $p"
  cmp -s "$B/www/debian/$p" "$B/acng/$res.body" || die "Cairn and apt-cacher-ng serve different bytes for $p"
  curl -sf -o /dev/null "${URL[$res,nginx]}" || die "nginx static does not serve $p"
done
INREL_SIZE=$(stat -c %s "$B/www/debian/$INREL_PATH"); BYHASH_SIZE=$(stat -c %s "$B/www/debian/$BYHASH_PATH")

# apt-cacher-ng's transfer log: `time|I|bytes|client|key` for each fetch from upstream.
acng_upstream_fetches() { awk -F'|' -v p="$1" '$2=="I" && index($5, p) {n++} END{print n+0}' "$B/acng/log/apt-cacher.log" 2>/dev/null || echo 0; }
ACNG_INREL_UP_BEFORE=$(acng_upstream_fetches InRelease)
declare -A WRPS WP99 WERR
CAIRN_PEAK=0; ACNG_PEAK=0
log "wrk: {deb, InRelease, by-hash Packages.xz} x {c1, c64} x {cairn, acng, nginx}, ${WRK_SECS}s each"
for res in "${RES[@]}"; do
  for conc in 1 64; do
    for srv in cairn acng nginx; do
      samp=
      if [ "$conc" -eq 64 ] && [ "$srv" = cairn ]; then start_sampler "$CAIRN_PID" "$B/peak"; samp=$SAMPLER_PID; fi
      if [ "$conc" -eq 64 ] && [ "$srv" = acng ]; then start_sampler "$ACNG_PID" "$B/peak"; samp=$SAMPLER_PID; fi
      run_wrk "$res,$conc,$srv" "$conc" "${URL[$res,$srv]}"
      if [ -n "$samp" ]; then
        stop_sampler "$samp"; pk=$(cat "$B/peak")
        if [ "$srv" = cairn ] && [ "$pk" -gt "$CAIRN_PEAK" ]; then CAIRN_PEAK=$pk; fi
        if [ "$srv" = acng ] && [ "$pk" -gt "$ACNG_PEAK" ]; then ACNG_PEAK=$pk; fi
      fi
    done
  done
done
sleep 2
CAIRN_AFTER_RSS=$(rss_mb "$CAIRN_PID"); ACNG_AFTER_RSS=$(rss_mb "$ACNG_PID")
CAIRN_WARN=$(sed 's/\x1b\[[0-9;]*m//g' "$B"/logs/cairn-*.err | grep -cE 'WARN|ERROR' || true)
ACNG_ERRLINES=$(cat "$B"/acng/log/apt-cacher.err 2>/dev/null | wc -l)
ACNG_INREL_UP_AFTER=$(acng_upstream_fetches InRelease)

# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
# shellcheck disable=SC2086
med() { median ${T[$1]}; }
fmt_runs() { echo "${T[$1]}" | sed 's/^ //; s/ /, /g'; }
# shellcheck disable=SC2086
wmed() { median ${WRPS[$1]}; }
# shellcheck disable=SC2086
pmed() { median ${WP99[$1]}; }
verdict() { if le "$1" "$2"; then echo "**met**"; else echo "**missed**"; fi; }   # verdict VALUE LIMIT

r "## apt: \`apt-get update\` + \`apt-get install --download-only\` of $NPKGS packages ($NDEBS .debs), and hits — $(date -u '+%Y-%m-%d %H:%M UTC')"
r ""
r "Machine: $(machine). $(apt-get -v | head -1), $(nginx -v 2>&1 | sed 's/.*: //'), apt-cacher-ng $(dpkg-query -W -f '${Version}' apt-cacher-ng 2>/dev/null), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}')."
r "Cairn: \`$CAIRN\` (sha256 $(sha256sum "$CAIRN" | cut -c1-12), file date $(date -u -r "$CAIRN" '+%Y-%m-%d %H:%M UTC'); repository HEAD at run time $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')). Archive: the first \`deb\` archive ending in \`/debian\` in apt's sources (\`http://<debian-archive>/…/debian\`), suite \`$SUITE\`, component \`$COMPONENT\`, $ARCH."
r "Command: \`$CMDLINE\`."
r ""
r "### Clean \`apt-get update\` + \`apt-get install --download-only -y\` of \`bench/apt-packages.txt\`"
r ""
r "$NPKGS packages, $NDEBS .debs with their dependencies (empty dpkg status), $(human_bytes "$DEB_BYTES") of .debs ($DEB_BYTES bytes). Every run starts from a fresh private apt state (own \`APT_CONFIG\`: private \`Dir::Etc*\`/\`Dir::State*\`/\`Dir::Cache*\`, no lists, no archives, \`Acquire::Languages none\`, no pdiffs, \`Acquire::Retries 0\`) and is checked for \`W:\`/\`E:\`/\`Err:\` lines and the .deb count. Seconds, median of $RUNS (all runs in brackets). Cold = empty cache (fresh per round); warm = the next run against the store that cold run filled. Cairn: sources → \`http://127.0.0.1:$CAIRN_PORT/apt/debian\` (default metadata TTL). apt-cacher-ng: as its docs say, an HTTP proxy (\`Acquire::http::Proxy\`) with the sources naming the archive itself; stock config from \`/etc/apt-cacher-ng\` (\`FreshIndexMaxAge\` 27 s). nginx: \`proxy_cache\` in front of the archive, every 200 cached for a day, never revalidated (the floor)."
r ""
r "| Variant | Median (s) | Runs (s) | vs direct | vs nginx warm |"
r "|---|---:|---|---:|---:|"
for k in direct cairn_cold cairn_warm acng_cold acng_warm nginx_cold nginx_warm; do
  case $k in
    direct) name="direct to the archive" ;; cairn_cold) name="Cairn cold" ;; cairn_warm) name="Cairn warm" ;;
    acng_cold) name="apt-cacher-ng cold" ;; acng_warm) name="apt-cacher-ng warm" ;;
    nginx_cold) name="nginx proxy_cache cold" ;; nginx_warm) name="nginx proxy_cache warm (floor)" ;;
  esac
  r "| $name | $(med $k) | $(fmt_runs $k) | $(ratio "$(med $k)" "$(med direct)")× | $(ratio "$(med $k)" "$(med nginx_warm)")× |"
done
r ""

r "### Hit throughput (wrk, ${WRK_SECS} s per run, one run each)"
r ""
r "Resources, all cached by the runs above: \`$DEB_PATH\` ($(human_bytes "$DEB_SIZE"), the .deb closest to 300 KB), \`$INREL_PATH\` ($(human_bytes "$INREL_SIZE")) and \`$BYHASH_PATH\` (Packages.xz, $(human_bytes "$BYHASH_SIZE")). Cairn at \`/apt/debian/…\`; apt-cacher-ng through its path-style form \`http://127.0.0.1:$ACNG_PORT/<debian-archive>/…/debian/…\` (wrk cannot use a proxy; the bytes were checked identical to Cairn's); nginx serves the bytes Cairn returned as static files (sendfile). req/s counts 2xx answers only (wrk's own figure includes error answers); errors = non-2xx answers + socket errors. c=1 uses 1 wrk thread, c=64 uses 2; wrk shares the cores with the server."
r ""
r "| Resource | Conc. | Cairn req/s | acng req/s | nginx req/s | Cairn p99 ms | acng p99 ms | nginx p99 ms | Cairn/acng | Cairn/nginx | errors C/A/N |"
r "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
MIN_CA=; MIN_CN=; MISS_CA=; MISS_CN=
for res in "${RES[@]}"; do
  case $res in deb) name=".deb" ;; inrelease) name="InRelease" ;; byhash) name="by-hash Packages.xz" ;; esac
  for conc in 1 64; do
    c=$(wmed "$res,$conc,cairn"); a=$(wmed "$res,$conc,acng"); n=$(wmed "$res,$conc,nginx")
    ca=$(ratio "$c" "$a"); cn=$(ratio "$c" "$n")
    r "| $name | $conc | $c | $a | $n | $(pmed "$res,$conc,cairn") | $(pmed "$res,$conc,acng") | $(pmed "$res,$conc,nginx") | $ca | $cn | ${WERR[$res,$conc,cairn]}/${WERR[$res,$conc,acng]}/${WERR[$res,$conc,nginx]} |"
    if [ -z "$MIN_CA" ] || le "$ca" "$MIN_CA"; then MIN_CA=$ca; fi
    if [ -z "$MIN_CN" ] || le "$cn" "$MIN_CN"; then MIN_CN=$cn; fi
    le 1 "$ca" || MISS_CA="${MISS_CA:+$MISS_CA, }$name c=$conc ($ca×)"
    le 0.8 "$cn" || MISS_CN="${MISS_CN:+$MISS_CN, }$name c=$conc ($cn×)"
  done
done
r ""
r "### Memory (VmRSS, MB)"
r ""
r "| Process | Idle after start | After the warm runs | Peak during the c=64 wrk runs (0.2 s samples) | After wrk |"
r "|---|---:|---:|---:|---:|"
r "| Cairn | $CAIRN_START_RSS | $CAIRN_WARM_RSS | $(kb2mb "$CAIRN_PEAK") | $CAIRN_AFTER_RSS |"
r "| apt-cacher-ng | $ACNG_START_RSS | $ACNG_WARM_RSS | $(kb2mb "$ACNG_PEAK") | $ACNG_AFTER_RSS |"
r ""
r "Warnings/errors in Cairn's logs: $CAIRN_WARN. Lines in apt-cacher-ng's error log (whole run): $ACNG_ERRLINES. apt-cacher-ng fetched \`InRelease\` from the archive $((ACNG_INREL_UP_AFTER - ACNG_INREL_UP_BEFORE)) times during the wrk runs (a volatile file; the archive sends no \`Last-Modified\`, and apt-cacher-ng downloads it again rather than serve its copy, answering 503 or closing the connection to concurrent requests meanwhile)."
r ""
r "### Goals"
r ""
r "- Warm ≤ 1.05× the nginx floor: $(verdict "$(ratio "$(med cairn_warm)" "$(med nginx_warm)")" 1.05) — Cairn warm $(med cairn_warm) s = $(ratio "$(med cairn_warm)" "$(med nginx_warm)")× nginx warm $(med nginx_warm) s (apt-cacher-ng warm: $(ratio "$(med acng_warm)" "$(med nginx_warm)")×)."
r "- Cold ≤ 1.10× direct: $(verdict "$(ratio "$(med cairn_cold)" "$(med direct)")" 1.10) — Cairn cold $(med cairn_cold) s = $(ratio "$(med cairn_cold)" "$(med direct)")× direct $(med direct) s (apt-cacher-ng cold: $(ratio "$(med acng_cold)" "$(med direct)")×)."
if [ -z "$MISS_CA" ]; then v="**met**"; else v="**missed** on $MISS_CA"; fi
r "- Hit throughput ≥ apt-cacher-ng: $v — lowest Cairn/acng ratio ${MIN_CA}× over the 6 rows."
if [ -z "$MISS_CN" ]; then v="**met**"; else v="**missed** on $MISS_CN"; fi
r "- Hit throughput ≥ 0.8× nginx static: $v — lowest Cairn/nginx ratio ${MIN_CN}× over the 6 rows."
r "- Cairn idle RSS ≤ 50 MB: $(verdict "$CAIRN_START_RSS" 50) — $CAIRN_START_RSS MB after start ($CAIRN_WARM_RSS MB after the warm runs, peak $(kb2mb "$CAIRN_PEAK") MB under c=64)."
r ""
log "done"
