#!/usr/bin/env bash
# bench/npm.sh — Cairn npm benchmark: clean `npm install` wall time (direct to the upstream,
# through Cairn cold/warm, Verdaccio cold/warm, and an nginx proxy_cache "floor"), wrk
# throughput + p99 on a cached packument and cached tarballs (Cairn vs Verdaccio vs nginx
# serving the same bytes from disk), RSS of Cairn and Verdaccio, and streaming of a 2 GiB
# artifact through Cairn from a local fake upstream. Appends a Markdown report to $1.
#
#   sudo bash bench/npm.sh BENCHMARKS-run.md        (from the repository root; ~20 min)
#
# Needs network access to npm's configured registry (`npm config get registry`), node/npm,
# python3, curl; installs nginx + wrk (apt) and Verdaccio (npm, under /tmp/bench/tools) if
# missing. All load targets 127.0.0.1. Scratch space: /tmp/bench (about 5 GB free needed).
# Knobs (env): RUNS=3 installs per configuration, WRK_SECS=10, WRK_ROUNDS=3, HUGE_MIB=2048,
# CAIRN_BIN (default /tmp/bench/cairn, refreshed from target/release/cairn when that is newer).
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/npm.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PROJECT=$HERE/npm-project
B=/tmp/bench
RUNS=${RUNS:-3}
WRK_SECS=${WRK_SECS:-10}
WRK_ROUNDS=${WRK_ROUNDS:-3}
HUGE_MIB=${HUGE_MIB:-2048}
CAIRN=${CAIRN_BIN:-$B/cairn}
VERDACCIO=$B/tools/node_modules/.bin/verdaccio

CAIRN_PORT=7701       # Cairn for installs and wrk
CAIRN_HUGE_PORT=7702  # Cairn in front of the fake upstream
VERD_PORT=4873
NGX_CACHE_PORT=8081   # nginx proxy_cache in front of the upstream
NGX_STATIC_PORT=8082  # nginx serving the same bytes from disk
FAKE_PORT=8090

NPM_ACCEPT='application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*'
PKUM_NAME=express                       # packument under wrk
SMALL_TGZ=(express 4.21.2)              # small tarball under wrk
BIG_TGZ=(typescript 5.9.3)              # big tarball under wrk

export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

mkdir -p "$B"/{logs,tmp,work}
REPORT=$B/report-$$.md
: > "$REPORT"
PIDS=()        # long-running servers we started (killed at exit)
SAMPLERS=()

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
r() { printf '%s\n' "$*" >> "$REPORT"; }   # report line
now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
median() {
  printf '%s\n' "$@" | grep -E '^[0-9]+(\.[0-9]+)?$' | sort -g |
    awk '{a[NR]=$1} END{ if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b+0 > 0) printf "%.2f", a/b; else printf "n/a" }'; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
rss_mb() { awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo n/a; }
kb2mb() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }

# Peak-RSS sampler (every 0.2 s) writing the max VmRSS in kB to $2.
start_sampler() {
  local pid=$1 file=$2
  echo 0 > "$file"
  (
    max=0
    while kill -0 "$pid" 2>/dev/null; do
      cur=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      if [ "${cur:-0}" -gt "$max" ]; then max=$cur; echo "$max" > "$file"; fi
      sleep 0.2
    done
  ) &
  SAMPLER_PID=$!
  SAMPLERS+=("$SAMPLER_PID")
}
stop_sampler() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

stop_pid() {
  local pid=$1
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

UPSTREAM_HOST=
sanitize() {  # keep the registry's host name out of the report
  if [ -n "$UPSTREAM_HOST" ]; then sed "s#${UPSTREAM_HOST//./\\.}#<npm-registry>#g"; else cat; fi
}

finish() {
  local rc=$?
  set +e
  for p in "${SAMPLERS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  if [ "$rc" -ne 0 ]; then
    r ""; r "**The script stopped early (exit $rc); results above are partial.** Last log lines:"; r '```'
    tail -n 15 "$B/logs/script.log" 2>/dev/null | sanitize >> "$REPORT"; r '```'
  fi
  sanitize < "$REPORT" >> "$OUT"
  log "report appended to $OUT"
}
trap finish EXIT
exec 2> >(tee -a "$B/logs/script.log" >&2)

wait_for() {  # wait_for PID SECONDS CMD... : until CMD succeeds, PID alive
  local pid=$1 secs=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { log "process $pid died while waiting for: $*"; return 1; }
    [ "$(date +%s)" -lt "$deadline" ] || { log "timeout waiting for: $*"; return 1; }
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------------------
# a. Setup
# ---------------------------------------------------------------------------------------
log "setup"
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  [ "$(id -u)" -eq 0 ] || { log "nginx/wrk missing: run as root (sudo) to install them"; exit 1; }
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y nginx wrk
fi
if [ -z "${CAIRN_BIN:-}" ] && [ -x "$REPO/target/release/cairn" ] &&
   { [ ! -x "$CAIRN" ] || [ "$REPO/target/release/cairn" -nt "$CAIRN" ]; }; then
  cp "$REPO/target/release/cairn" "$CAIRN"   # benchmark a copy, not the file cargo rewrites
fi
[ -x "$CAIRN" ] || { log "no Cairn binary: build target/release/cairn or set CAIRN_BIN"; exit 1; }
REG=$(npm config get registry 2>/dev/null)
case "$REG" in */) ;; *) REG=$REG/ ;; esac
UPSTREAM_HOST=$(python3 -c 'import sys; from urllib.parse import urlsplit; print(urlsplit(sys.argv[1]).hostname)' "$REG")
UPSTREAM_HOSTPORT=$(python3 -c 'import sys; from urllib.parse import urlsplit; print(urlsplit(sys.argv[1]).netloc)' "$REG")

# Private npm user config: the registry and the user's certificate/proxy settings only.
USER_NPMRC=$(npm config get userconfig 2>/dev/null || true)
write_npmrc() {  # write_npmrc REGISTRY FILE
  {
    echo "registry=$1"
    echo "fund=false"; echo "audit=false"; echo "update-notifier=false"
    echo "noproxy=127.0.0.1,localhost"
    if [ -f "$USER_NPMRC" ]; then
      grep -E '^(cafile|ca|ca\[\]|cert|key|strict-ssl|proxy|https-proxy|noproxy)[[:space:]]*=' "$USER_NPMRC" || true
    fi
  } > "$2"
}
write_npmrc "$REG" "$B/npmrc-direct"

if [ ! -x "$VERDACCIO" ]; then
  mkdir -p "$B/tools"
  # verdaccio-audit asks for node-fetch@cjs, a dist-tag some registries/mirrors lack: pin it.
  cat > "$B/tools/package.json" <<'EOF'
{"name":"cairn-bench-tools","private":true,"overrides":{"verdaccio-audit":{"node-fetch":"2.7.0"}}}
EOF
  NPM_CONFIG_USERCONFIG=$B/npmrc-direct npm install --prefix "$B/tools" verdaccio --no-audit --no-fund --loglevel=error
fi

for port in $CAIRN_PORT $CAIRN_HUGE_PORT $VERD_PORT $NGX_CACHE_PORT $NGX_STATIC_PORT $FAKE_PORT; do
  if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then
    log "port $port is already in use"; exit 1
  fi
done

# Count of installed packages in a node_modules tree (scoped and nested included).
count_pkgs() {
  node -e '
const fs=require("fs"),p=require("path");let n=0;
function walk(d){let es;try{es=fs.readdirSync(d)}catch{return}
 for(const e of es){if(e.startsWith("."))continue;const f=p.join(d,e);
  if(e.startsWith("@")){let ss=[];try{ss=fs.readdirSync(f)}catch{};for(const s of ss)visit(p.join(f,s))}else visit(f)}}
function visit(f){if(fs.existsSync(p.join(f,"package.json"))){n++;walk(p.join(f,"node_modules"))}}
walk(process.argv[1]);console.log(n)' "$1/node_modules"
}

# ---------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------
CAIRN_PID=
start_cairn() {  # start_cairn LABEL PORT DATADIR UPSTREAM
  local label=$1 port=$2 dir=$3 up=$4
  "$CAIRN" serve --listen "127.0.0.1:$port" --data-dir "$dir" --npm-upstream "$up" \
    --metadata-ttl 1h > "$B/logs/cairn-$label.out" 2> "$B/logs/cairn-$label.err" &
  CAIRN_PID=$!
  PIDS+=("$CAIRN_PID")
  wait_for "$CAIRN_PID" 30 grep -q 'cairn listening on' "$B/logs/cairn-$label.out"
}

VERD_PID=
start_verdaccio() {  # start_verdaccio LABEL STORAGE
  local label=$1 storage=$2 cfg=$B/verdaccio/config-$1.yaml
  mkdir -p "$B/verdaccio/plugins" "$storage"
  cat > "$cfg" <<EOF
storage: $storage
plugins: $B/verdaccio/plugins
auth:
  htpasswd:
    file: $B/verdaccio/htpasswd
    max_users: -1
uplinks:
  upstream:
    url: $REG
    maxage: 60m
    timeout: 60s
packages:
  '@*/*':
    access: \$all
    publish: \$authenticated
    proxy: upstream
  '**':
    access: \$all
    publish: \$authenticated
    proxy: upstream
server:
  keepAliveTimeout: 60
max_body_size: 100mb
log: { type: stdout, format: pretty, level: warn }
EOF
  "$VERDACCIO" --config "$cfg" --listen "127.0.0.1:$VERD_PORT" > "$B/logs/verdaccio-$label.log" 2>&1 &
  VERD_PID=$!
  PIDS+=("$VERD_PID")
  wait_for "$VERD_PID" 60 curl -sf "http://127.0.0.1:$VERD_PORT/-/ping"
}

NGX_PID=
start_nginx() {
  local d=$B/nginx
  rm -rf "$d"; mkdir -p "$d"/{cache,tmp,logs} "$B/static"
  local user_line=""
  [ "$(id -u)" -eq 0 ] && user_line="user root;"
  cat > "$d/nginx.conf" <<EOF
$user_line
worker_processes 2;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $d/tmp/client;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  default_type application/octet-stream;
  proxy_cache_path $d/cache levels=1:2 keys_zone=npm:64m max_size=20g inactive=30d use_temp_path=off;

  # npm's floor: a caching reverse proxy in front of the upstream registry.
  server {
    listen 127.0.0.1:$NGX_CACHE_PORT;
    location / {
      proxy_pass $REG;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $UPSTREAM_HOSTPORT;
      proxy_set_header Accept-Encoding "";
      proxy_ssl_server_name on;
      proxy_ssl_name $UPSTREAM_HOST;
      proxy_cache npm;
      proxy_cache_key \$scheme\$proxy_host\$request_uri|\$http_accept;
      proxy_cache_valid 200 30d;
      proxy_cache_valid any 1m;
      proxy_ignore_headers Cache-Control Expires Set-Cookie;
      proxy_cache_lock on;
      proxy_buffers 64 64k;
      sub_filter '$REG' 'http://127.0.0.1:$NGX_CACHE_PORT/';
      sub_filter_types application/json application/vnd.npm.install-v1+json;
      sub_filter_once off;
      add_header X-Cache-Status \$upstream_cache_status;
    }
  }

  # The same bytes Cairn serves, as static files.
  server {
    listen 127.0.0.1:$NGX_STATIC_PORT;
    root $B/static;
    location /packument/ { default_type application/json; }
    location / { }
  }
}
EOF
  nginx -t -q -p "$d/" -e "$d/logs/error.log" -c "$d/nginx.conf"
  nginx -p "$d/" -e "$d/logs/error.log" -c "$d/nginx.conf" -g 'daemon off;' &
  NGX_PID=$!
  PIDS+=("$NGX_PID")
  wait_for "$NGX_PID" 20 curl -s -o /dev/null "http://127.0.0.1:$NGX_STATIC_PORT/"
}

# ---------------------------------------------------------------------------------------
# b. Installs
# ---------------------------------------------------------------------------------------
INST_SECS=; INST_PKGS=
npm_install() {  # npm_install LABEL REGISTRY_URL -> INST_SECS, INST_PKGS
  local label=$1 reg=$2 dir=$B/work/$1 cache rc status=0 t0 t1
  rm -rf "$dir"; mkdir -p "$dir"; cp "$PROJECT/package.json" "$dir/"
  cache=$(mktemp -d -p "$B/tmp" npm-cache.XXXXXX)
  rc=$B/tmp/npmrc-$label
  write_npmrc "$reg" "$rc"
  t0=$(now)
  (cd "$dir" && NPM_CONFIG_USERCONFIG=$rc timeout 900 npm install --no-package-lock \
     --cache "$cache" --no-audit --no-fund --loglevel=warn) > "$B/logs/npm-$label.log" 2>&1 || status=$?
  t1=$(now)
  INST_PKGS=$(count_pkgs "$dir" 2>/dev/null || echo "?")
  if [ "$status" -eq 0 ]; then INST_SECS=$(sub "$t0" "$t1"); else INST_SECS=FAIL; fi
  log "install $label: ${INST_SECS}s, $INST_PKGS packages (exit $status)"
  if [ "$status" -ne 0 ]; then tail -n 5 "$B/logs/npm-$label.log" >&2; fi
  rm -rf "$dir" "$cache"
}

declare -A T      # T[config]="s1 s2 s3"
declare -A NPKG   # NPKG[config]="n1 n2 n3"
add() { T[$1]="${T[$1]:-} $2"; NPKG[$1]="${NPKG[$1]:-} $3"; }

CAIRN_START_RSS=; VERD_START_RSS=
log "installs: $RUNS rounds of direct / cairn cold / verdaccio cold"
for i in $(seq 1 "$RUNS"); do
  npm_install "direct-$i" "$REG"; add direct "$INST_SECS" "$INST_PKGS"

  rm -rf "$B/cairn-data-$i"
  start_cairn "cold-$i" $CAIRN_PORT "$B/cairn-data-$i" "$REG"
  [ -n "$CAIRN_START_RSS" ] || { sleep 1; CAIRN_START_RSS=$(rss_mb "$CAIRN_PID"); }
  npm_install "cairn-cold-$i" "http://127.0.0.1:$CAIRN_PORT/npm/"; add cairn_cold "$INST_SECS" "$INST_PKGS"
  if [ "$i" -lt "$RUNS" ]; then stop_pid "$CAIRN_PID"; rm -rf "$B/cairn-data-$i"; fi

  rm -rf "$B/verdaccio/storage-$i"
  start_verdaccio "cold-$i" "$B/verdaccio/storage-$i"
  [ -n "$VERD_START_RSS" ] || { sleep 1; VERD_START_RSS=$(rss_mb "$VERD_PID"); }
  npm_install "verdaccio-cold-$i" "http://127.0.0.1:$VERD_PORT/"; add verd_cold "$INST_SECS" "$INST_PKGS"
  if [ "$i" -lt "$RUNS" ]; then stop_pid "$VERD_PID"; rm -rf "$B/verdaccio/storage-$i"; fi
done
# The last cold Cairn / Verdaccio stay up with their stores: they serve the warm runs.

start_nginx
npm_install "nginx-cold" "http://127.0.0.1:$NGX_CACHE_PORT/"; add nginx_cold "$INST_SECS" "$INST_PKGS"

log "installs: $RUNS rounds of cairn warm / verdaccio warm / nginx warm"
for i in $(seq 1 "$RUNS"); do
  npm_install "cairn-warm-$i" "http://127.0.0.1:$CAIRN_PORT/npm/"; add cairn_warm "$INST_SECS" "$INST_PKGS"
  npm_install "verdaccio-warm-$i" "http://127.0.0.1:$VERD_PORT/"; add verd_warm "$INST_SECS" "$INST_PKGS"
  npm_install "nginx-warm-$i" "http://127.0.0.1:$NGX_CACHE_PORT/"; add nginx_warm "$INST_SECS" "$INST_PKGS"
done
sleep 2
CAIRN_IDLE_RSS=$(rss_mb "$CAIRN_PID"); VERD_IDLE_RSS=$(rss_mb "$VERD_PID")

# shellcheck disable=SC2086
med() { median ${T[$1]}; }
fmt_runs() { echo "${T[$1]}" | sed 's/^ //; s/ /, /g'; }
fmt_pkgs() { echo "${NPKG[$1]}" | tr ' ' '\n' | grep -v '^$' | sort -u | paste -sd/ -; }

{
  r "## npm benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
  r ""
  r "Machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), load at start $(cut -d' ' -f1-3 /proc/loadavg). node $(node -v), npm $(npm -v 2>/dev/null), $(nginx -v 2>&1 | sed 's/.*: //'), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), verdaccio $("$VERDACCIO" --version 2>/dev/null)."
  r "Cairn: \`$CAIRN\` (sha256 $(sha256sum "$CAIRN" | cut -c1-12), file date $(date -u -r "$CAIRN" '+%Y-%m-%d %H:%M UTC'); repository HEAD at run time $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')). Upstream: \`npm config get registry\` (\`<npm-registry>\`)."
  r ""
  r "### Clean \`npm install\` (project \`bench/npm-project\`, no lockfile, empty npm cache, fresh node_modules)"
  r ""
  r "Seconds, median of $RUNS (all runs in brackets). Cold = empty proxy store (fresh per run); warm = store filled by the last cold run. Metadata TTL 1 h in Cairn (\`--metadata-ttl 1h\`) and Verdaccio (uplink \`maxage: 60m\`), so warm runs are served from cache without revalidation, like the nginx floor (which never revalidates)."
  r ""
  r "| Configuration | Median (s) | Runs (s) | Packages installed |"
  r "|---|---:|---|---:|"
  r "| direct to \`<npm-registry>\` | $(med direct) | $(fmt_runs direct) | $(fmt_pkgs direct) |"
  r "| Cairn cold | $(med cairn_cold) | $(fmt_runs cairn_cold) | $(fmt_pkgs cairn_cold) |"
  r "| Cairn warm | $(med cairn_warm) | $(fmt_runs cairn_warm) | $(fmt_pkgs cairn_warm) |"
  r "| Verdaccio cold | $(med verd_cold) | $(fmt_runs verd_cold) | $(fmt_pkgs verd_cold) |"
  r "| Verdaccio warm | $(med verd_warm) | $(fmt_runs verd_warm) | $(fmt_pkgs verd_warm) |"
  r "| nginx proxy_cache cold (priming, 1 run) | $(med nginx_cold) | $(fmt_runs nginx_cold) | $(fmt_pkgs nginx_cold) |"
  r "| nginx proxy_cache warm (npm's floor) | $(med nginx_warm) | $(fmt_runs nginx_warm) | $(fmt_pkgs nginx_warm) |"
  r ""
  r "Ratios of medians (lower is better for Cairn):"
  r ""
  r "| Ratio | Value |"
  r "|---|---:|"
  r "| Cairn warm / nginx warm (floor) | $(ratio "$(med cairn_warm)" "$(med nginx_warm)") |"
  r "| Cairn cold / direct | $(ratio "$(med cairn_cold)" "$(med direct)") |"
  r "| Cairn warm / direct | $(ratio "$(med cairn_warm)" "$(med direct)") |"
  r "| Verdaccio cold / Cairn cold | $(ratio "$(med verd_cold)" "$(med cairn_cold)") |"
  r "| Verdaccio warm / Cairn warm | $(ratio "$(med verd_warm)" "$(med cairn_warm)") |"
  r "| Verdaccio warm / nginx warm | $(ratio "$(med verd_warm)" "$(med nginx_warm)") |"
  r ""
}

# ---------------------------------------------------------------------------------------
# c + d. wrk throughput and memory
# ---------------------------------------------------------------------------------------
log "wrk: priming and fetching the exact bytes Cairn serves"
tarball_url() {  # tarball_url PACKUMENT_URL VERSION
  curl -sf -H "Accept: $NPM_ACCEPT" "$1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["versions"][sys.argv[1]]["dist"]["tarball"])' "$2"
}
pkum_cairn="http://127.0.0.1:$CAIRN_PORT/npm/$PKUM_NAME"
pkum_verd="http://127.0.0.1:$VERD_PORT/$PKUM_NAME"
small_cairn=$(tarball_url "http://127.0.0.1:$CAIRN_PORT/npm/${SMALL_TGZ[0]}" "${SMALL_TGZ[1]}")
big_cairn=$(tarball_url "http://127.0.0.1:$CAIRN_PORT/npm/${BIG_TGZ[0]}" "${BIG_TGZ[1]}")
small_verd=$(tarball_url "http://127.0.0.1:$VERD_PORT/${SMALL_TGZ[0]}" "${SMALL_TGZ[1]}")
big_verd=$(tarball_url "http://127.0.0.1:$VERD_PORT/${BIG_TGZ[0]}" "${BIG_TGZ[1]}")
mkdir -p "$B/static/packument" "$B/static/tgz"
curl -sf -H "Accept: $NPM_ACCEPT" -o "$B/static/packument/$PKUM_NAME.json" "$pkum_cairn"
# What npm 11 actually sends for packuments during `npm install` here (seen in an nginx
# access log): the full document, gzip accepted. nginx gets Cairn's gzipped bytes verbatim.
NPM_FULL_HDRS="Accept: application/json|Accept-Encoding: gzip, deflate"
curl -sf -H "Accept: application/json" -H "Accept-Encoding: gzip, deflate" -o "$B/static/packument/$PKUM_NAME-full.json.gz" "$pkum_cairn"
curl -sf -H "Accept: application/json" -H "Accept-Encoding: gzip, deflate" -o "$B/tmp/verd-full.gz" "$pkum_verd"
for u in "$small_cairn" "$big_cairn" "$small_verd" "$big_verd"; do curl -sf -o /dev/null "$u"; done  # prime
curl -sf -o "$B/static/tgz/small.tgz" "$small_cairn"
curl -sf -o "$B/static/tgz/big.tgz" "$big_cairn"
curl -sf -H "Accept: $NPM_ACCEPT" -o "$B/tmp/verd-pkum.json" "$pkum_verd"
size_of() { stat -c %s "$1"; }
sizes_kb() { awk -v b="$1" 'BEGIN{ if (b >= 1048576) printf "%.1f MB", b/1048576; else printf "%.0f KB", b/1024 }'; }

declare -A WRPS WP99 WERR
to_ms() { awk -v v="$1" 'BEGIN{ n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /m$/) n*=60000; else if (v ~ /s$/) n*=1000; printf "%.2f", n }'; }
run_wrk() {  # run_wrk KEY CONC URL ["Header: v|Header: v"]
  local key=$1 conc=$2 url=$3 hdrs=${4:-} threads=2 out rps p99 errs h
  local args=()
  [ "$conc" -ge 2 ] || threads=1   # wrk needs connections >= threads
  if [ -n "$hdrs" ]; then
    IFS='|' read -r -a hs <<< "$hdrs"
    for h in "${hs[@]}"; do args+=(-H "$h"); done
  fi
  out=$(wrk -t"$threads" -c"$conc" -d"${WRK_SECS}s" --timeout 10s --latency "${args[@]}" "$url" 2>&1 || true)
  echo "== $key $url" >> "$B/logs/wrk.log"; echo "$out" >> "$B/logs/wrk.log"
  rps=$(echo "$out" | awk '/^Requests\/sec/{printf "%.0f", $2}')
  p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  errs=$(echo "$out" | awk '/Non-2xx/{n+=$NF} /Socket errors/{for(i=1;i<=NF;i++) if ($i ~ /^[0-9]+,?$/) n+=$i+0} END{print n+0}')
  WRPS[$key]="${WRPS[$key]:-} ${rps:-0}"
  WP99[$key]="${WP99[$key]:-} $(to_ms "${p99:-0}")"
  WERR[$key]=$(( ${WERR[$key]:-0} + errs ))
  log "wrk $key: ${rps:-?} req/s, p99 ${p99:-?}, errors $errs"
}

declare -A URL HDR
URL[pkum,cairn]=$pkum_cairn;  HDR[pkum,cairn]="Accept: $NPM_ACCEPT"
URL[pkum,verd]=$pkum_verd;    HDR[pkum,verd]="Accept: $NPM_ACCEPT"
URL[pkum,nginx]="http://127.0.0.1:$NGX_STATIC_PORT/packument/$PKUM_NAME.json"; HDR[pkum,nginx]="Accept: $NPM_ACCEPT"
URL[full,cairn]=$pkum_cairn;  HDR[full,cairn]=$NPM_FULL_HDRS
URL[full,verd]=$pkum_verd;    HDR[full,verd]=$NPM_FULL_HDRS
URL[full,nginx]="http://127.0.0.1:$NGX_STATIC_PORT/packument/$PKUM_NAME-full.json.gz"; HDR[full,nginx]=$NPM_FULL_HDRS
URL[small,cairn]=$small_cairn; URL[small,verd]=$small_verd; URL[small,nginx]="http://127.0.0.1:$NGX_STATIC_PORT/tgz/small.tgz"
URL[big,cairn]=$big_cairn;     URL[big,verd]=$big_verd;     URL[big,nginx]="http://127.0.0.1:$NGX_STATIC_PORT/tgz/big.tgz"

CAIRN_PEAK=0; VERD_PEAK=0
log "wrk: $WRK_ROUNDS rounds x {packument, full packument gzip, small tgz, big tgz} x {c1, c64} x {cairn, verdaccio, nginx}"
for round in $(seq 1 "$WRK_ROUNDS"); do
  for res in pkum full small big; do
    for conc in 1 64; do
      for srv in cairn verd nginx; do
        samp=
        if [ "$conc" -eq 64 ] && [ "$srv" = cairn ]; then start_sampler "$CAIRN_PID" "$B/tmp/peak"; samp=$SAMPLER_PID; fi
        if [ "$conc" -eq 64 ] && [ "$srv" = verd ]; then start_sampler "$VERD_PID" "$B/tmp/peak"; samp=$SAMPLER_PID; fi
        run_wrk "$res,$conc,$srv" "$conc" "${URL[$res,$srv]}" "${HDR[$res,$srv]:-}"
        if [ -n "$samp" ]; then
          stop_sampler "$samp"; pk=$(cat "$B/tmp/peak")
          if [ "$srv" = cairn ] && [ "$pk" -gt "$CAIRN_PEAK" ]; then CAIRN_PEAK=$pk; fi
          if [ "$srv" = verd ] && [ "$pk" -gt "$VERD_PEAK" ]; then VERD_PEAK=$pk; fi
        fi
      done
    done
  done
done
sleep 2
CAIRN_AFTER_RSS=$(rss_mb "$CAIRN_PID"); VERD_AFTER_RSS=$(rss_mb "$VERD_PID")

# shellcheck disable=SC2086
wmed() { median ${WRPS[$1]}; }
# shellcheck disable=SC2086
pmed() { median ${WP99[$1]}; }
{
  r "### Hit throughput (wrk, ${WRK_SECS} s per run, median of $WRK_ROUNDS interleaved runs)"
  r ""
  r "Resources: the abbreviated packument of \`$PKUM_NAME\` ($(sizes_kb "$(size_of "$B/static/packument/$PKUM_NAME.json")") as Cairn serves it, requested with npm's Accept header; Verdaccio's answer is $(sizes_kb "$(size_of "$B/tmp/verd-pkum.json")")); the full packument of \`$PKUM_NAME\` requested as npm $(npm -v 2>/dev/null) does during this install (\`Accept: application/json\`, \`Accept-Encoding: gzip, deflate\`; Cairn answers $(sizes_kb "$(size_of "$B/static/packument/$PKUM_NAME-full.json.gz")") gzipped, Verdaccio $(sizes_kb "$(size_of "$B/tmp/verd-full.gz")")); the tarball \`${SMALL_TGZ[0]}-${SMALL_TGZ[1]}.tgz\` ($(sizes_kb "$(size_of "$B/static/tgz/small.tgz")")) and \`${BIG_TGZ[0]}-${BIG_TGZ[1]}.tgz\` ($(sizes_kb "$(size_of "$B/static/tgz/big.tgz")")), all already cached. nginx serves the exact bytes Cairn returned as static files (sendfile). c=1 uses 1 wrk thread (wrk needs threads <= connections), c=64 uses 2. wrk shares the 2 cores with the server."
  r ""
  r "| Resource | Conc. | Cairn req/s | Verdaccio req/s | nginx static req/s | Cairn p99 ms | Verdaccio p99 ms | nginx p99 ms | Cairn/nginx | Cairn/Verdaccio | errors C/V/N |"
  r "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for res in pkum full small big; do
    case $res in pkum) name="packument \`$PKUM_NAME\` (abbreviated)" ;; full) name="packument \`$PKUM_NAME\` (full, gzip)" ;; small) name="tarball ${SMALL_TGZ[0]}" ;; big) name="tarball ${BIG_TGZ[0]}" ;; esac
    for conc in 1 64; do
      c=$(wmed "$res,$conc,cairn"); v=$(wmed "$res,$conc,verd"); n=$(wmed "$res,$conc,nginx")
      r "| $name | $conc | $c | $v | $n | $(pmed "$res,$conc,cairn") | $(pmed "$res,$conc,verd") | $(pmed "$res,$conc,nginx") | $(ratio "$c" "$n") | $(ratio "$c" "$v") | ${WERR[$res,$conc,cairn]}/${WERR[$res,$conc,verd]}/${WERR[$res,$conc,nginx]} |"
    done
  done
  r ""
  r "All req/s runs (cairn | verdaccio | nginx):"
  r ""
  for res in pkum full small big; do for conc in 1 64; do
    r "- $res c=$conc: ${WRPS[$res,$conc,cairn]# } | ${WRPS[$res,$conc,verd]# } | ${WRPS[$res,$conc,nginx]# }"
  done; done
  r ""
  r "### Memory (VmRSS, MB)"
  r ""
  r "| Process | Idle after start | Idle after the installs | Peak during c=64 wrk runs (0.2 s samples) | Idle after wrk |"
  r "|---|---:|---:|---:|---:|"
  r "| Cairn | $CAIRN_START_RSS | $CAIRN_IDLE_RSS | $(kb2mb "$CAIRN_PEAK") | $CAIRN_AFTER_RSS |"
  r "| Verdaccio | $VERD_START_RSS | $VERD_IDLE_RSS | $(kb2mb "$VERD_PEAK") | $VERD_AFTER_RSS |"
  r ""
}

# Cairn's own view before we stop it.
curl -s "http://127.0.0.1:$CAIRN_PORT/metrics" > "$B/logs/cairn-metrics.txt" || true
stop_pid "$VERD_PID"
stop_pid "$NGX_PID"

# ---------------------------------------------------------------------------------------
# e. Large artifact streaming
# ---------------------------------------------------------------------------------------
log "huge: starting the fake upstream (generates ${HUGE_MIB} MiB once under $B/huge-$HUGE_MIB)"
python3 "$HERE/fake_upstream.py" --port $FAKE_PORT --dir "$B/huge-$HUGE_MIB" --size-mib "$HUGE_MIB" > "$B/logs/fake.out" 2> "$B/logs/fake.err" &
FAKE_PID=$!; PIDS+=("$FAKE_PID")
wait_for "$FAKE_PID" 600 grep -q 'listening' "$B/logs/fake.out"
HUGE_BYTES=$(( HUGE_MIB * 1048576 ))
HUGE_SHA=$(sed 's/.*integrity=//' "$B/logs/fake.out" | head -1)
cw() { curl -s -o /dev/null -w '%{http_code} %{size_download} %{time_total} %{time_starttransfer}' "$@"; }
mbps() { awk -v b="$1" -v t="$2" 'BEGIN{ if (t+0 > 0) printf "%.0f", b/1048576/t; else print "n/a" }'; }

read -r d_code d_size d_time _ <<< "$(cw "http://127.0.0.1:$FAKE_PORT/huge/-/huge-1.0.0.tgz")"
log "huge direct: $d_code $d_size ${d_time}s"

rm -rf "$B/cairn-huge"
start_cairn huge $CAIRN_HUGE_PORT "$B/cairn-huge" "http://127.0.0.1:$FAKE_PORT/"
HUGE_PID=$CAIRN_PID
sleep 1; HUGE_IDLE=$(rss_mb "$HUGE_PID")
huge_url=$(tarball_url "http://127.0.0.1:$CAIRN_HUGE_PORT/npm/huge" 1.0.0)
start_sampler "$HUGE_PID" "$B/tmp/peak-huge-cold"; s=$SAMPLER_PID
read -r c_code c_size c_time c_ttfb <<< "$(cw "$huge_url")"
stop_sampler "$s"; HUGE_COLD_PEAK=$(kb2mb "$(cat "$B/tmp/peak-huge-cold")")
log "huge cold: $c_code $c_size ${c_time}s (ttfb ${c_ttfb}s), peak ${HUGE_COLD_PEAK} MB"
sleep 1
start_sampler "$HUGE_PID" "$B/tmp/peak-huge-warm"; s=$SAMPLER_PID
read -r w_code w_size w_time w_ttfb <<< "$(cw "$huge_url")"
stop_sampler "$s"; HUGE_WARM_PEAK=$(kb2mb "$(cat "$B/tmp/peak-huge-warm")")
log "huge warm: $w_code $w_size ${w_time}s (ttfb ${w_ttfb}s), peak ${HUGE_WARM_PEAK} MB"
HUGE_AFTER=$(rss_mb "$HUGE_PID")
# Separate, untimed check that the cached bytes are the right ones.
got_sha="sha512-$(curl -s "$huge_url" | openssl dgst -sha512 -binary | base64 -w0)"
if [ "$got_sha" = "$HUGE_SHA" ]; then sha_ok="yes (sha512 matches)"; else sha_ok="**NO** (got $got_sha)"; fi
STORE_DU=$(du -sh "$B/cairn-huge" 2>/dev/null | cut -f1)
{
  r "### Large artifact: ${HUGE_MIB} MiB tarball through Cairn from a local fake upstream (\`bench/fake_upstream.py\`)"
  r ""
  r "| Fetch (\`curl -o /dev/null\`) | HTTP | Bytes | Time (s) | Time to first byte (s) | MB/s | Cairn peak RSS (MB) |"
  r "|---|---|---:|---:|---:|---:|---:|"
  r "| straight from the fake upstream | $d_code | $d_size | $d_time | – | $(mbps "$d_size" "$d_time") | – |"
  r "| through Cairn, cold (fetch + hash + store) | $c_code | $c_size | $c_time | $c_ttfb | $(mbps "$c_size" "$c_time") | $HUGE_COLD_PEAK |"
  r "| through Cairn, warm (from the store) | $w_code | $w_size | $w_time | $w_ttfb | $(mbps "$w_size" "$w_time") | $HUGE_WARM_PEAK |"
  r ""
  r "Cairn RSS idle before: $HUGE_IDLE MB, after: $HUGE_AFTER MB. Expected size $HUGE_BYTES bytes. Bytes served from the store hash to the packument's integrity: $sha_ok. Store size on disk: $STORE_DU."
  r ""
}
stop_pid "$HUGE_PID"; stop_pid "$FAKE_PID"; stop_pid "$CAIRN_PID" || true
rm -rf "$B/cairn-huge"

# ---------------------------------------------------------------------------------------
# Cairn's logs and metrics
# ---------------------------------------------------------------------------------------
{
  r "### Cairn health during the run"
  r ""
  fivexx=$(grep -E '^[a-z_]*http[a-z_]*\{.*status="5[0-9][0-9]"' "$B/logs/cairn-metrics.txt" 2>/dev/null || true)
  r "5xx in Cairn's /metrics (install + wrk instance): ${fivexx:-none}"
  r ""
  r "Warnings/errors in Cairn's logs (all instances; count, then up to 15 distinct lines):"
  r '```'
  cat "$B"/logs/cairn-*.err | sed 's/\x1b\[[0-9;]*m//g' | grep -E 'WARN|ERROR' > "$B/tmp/cairn-warn" || true
  echo "count: $(wc -l < "$B/tmp/cairn-warn")" >> "$REPORT"
  sed -E 's/^[0-9T:.-]+Z? *//' "$B/tmp/cairn-warn" | sort | uniq -c | sort -rn | head -15 >> "$REPORT"
  r '```'
  r ""
  r "Cairn's /metrics (request and upstream counters):"
  r '```'
  grep -vE '^#' "$B/logs/cairn-metrics.txt" | grep -E 'request|upstream|lookups|served_bytes' | grep -v '_bucket' | head -40 >> "$REPORT" || true
  r '```'
  r ""
}
log "done"
