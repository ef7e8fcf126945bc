#!/usr/bin/env bash
# bench/pypi.sh: Cairn as a PyPI cache (the simple API under /pypi/). Measures:
#   - wall time of `pip download` of bench/pypi-requirements.txt (56 pinned wheels, caches off,
#     empty destination every run): direct to pip's upstream index, through Cairn cold (empty
#     store, fresh per run) and warm, through devpi-server cold and warm (its root/pypi mirror
#     pointed at the same upstream), and through an nginx proxy_cache in front of the upstream,
#     cold and warm (a plain HTTP cache: pip's floor);
#   - wall time of `uv pip compile --no-cache` of the same file: direct, Cairn cold and warm,
#     devpi warm;
#   - wrk hit throughput and p99 latency (c=1 with 1 thread, c=64 with 2) on one cached simple
#     page (asked for with pip's headers) and one cached wheel: Cairn vs devpi vs nginx serving
#     the same bytes Cairn serves as static files;
#   - RSS (VmRSS) of Cairn and devpi idle and at peak under the c=64 wrk runs.
# Appends a Markdown report to $1. Run from the repository root after `cargo build --release`
# (this script builds nothing):
#
#   sudo bash bench/pypi.sh BENCHMARKS-run.md        (~12-15 minutes on 2 cores)
#
# The upstream is found as Cairn finds it: PIP_INDEX_URL, else pip's configured index-url, else
# pip's built-in default; the file host is read from one of its pages. Installs nginx and wrk
# (apt) if missing, and devpi-server + uv into a venv under /tmp/bench-pypi/tools. All load
# targets 127.0.0.1. Scratch space: /tmp/bench-pypi/run (about 2 GB). Knobs (env): RUNS=3,
# WRK_SECS=10, WRK_ROUNDS=1, CAIRN_BIN (default target/release/cairn).
set -euo pipefail

OUT_ARG=${1:?usage: bash bench/pypi.sh REPORT.md}
case "$OUT_ARG" in /*) OUT=$OUT_ARG ;; *) OUT=$PWD/$OUT_ARG ;; esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
REQS=$HERE/pypi-requirements.txt
B=/tmp/bench-pypi
W=$B/run
TOOLS=$B/tools
RUNS=${RUNS:-3}
WRK_SECS=${WRK_SECS:-10}
WRK_ROUNDS=${WRK_ROUNDS:-1}
CAIRN=${CAIRN_BIN:-$REPO/target/release/cairn}
CMDLINE="RUNS=$RUNS WRK_SECS=$WRK_SECS WRK_ROUNDS=$WRK_ROUNDS${CAIRN_BIN:+ CAIRN_BIN=$CAIRN_BIN} bash bench/pypi.sh $OUT_ARG"

CAIRN_PORT=7721
DEVPI_PORT=3141
NGX_CACHE_PORT=8095   # nginx proxy_cache in front of the upstream
NGX_STATIC_PORT=8096  # nginx serving the bytes Cairn serves, from disk
DEVPI_PW=bench-$$

PAGE_PROJECT=requests   # simple page under wrk
WHEEL_PROJECT=requests  # its wheel (the version pinned in the requirements) under wrk
PIP_ACCEPT='application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01'
PIP_AE='gzip, deflate'  # what pip's vendored requests sends

export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------------------
# Preconditions (before anything is started or written)
# ---------------------------------------------------------------------------------------
[ -f "$REQS" ] || die "missing $REQS"
[ -x "$CAIRN" ] || die "no Cairn binary at $CAIRN: build it first (cargo build --release) or set CAIRN_BIN; this script builds nothing"
"$CAIRN" serve --help 2>/dev/null | grep -q -- '--pypi-upstream' ||
  die "$CAIRN has no --pypi-upstream (built before PyPI support?): rebuild it or set CAIRN_BIN"
command -v python3 >/dev/null || die "python3 is needed"
python3 -m pip --version >/dev/null 2>&1 || die "python3 has no pip"
PYVER=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')

mkdir -p "$B"
rm -rf "$W"
mkdir -p "$W"/{logs,tmp,dl,static/page,static/files}
REPORT=$W/report.md
: > "$REPORT"
PIDS=()       # long-running servers we started (stopped at exit)
SAMPLERS=()
exec 2> >(tee -a "$W/logs/script.log" >&2)

r() { printf '%s\n' "$*" >> "$REPORT"; }
now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
median() {
  printf '%s\n' "$@" | grep -E '^[0-9]+(\.[0-9]+)?$' | sort -g |
    awk '{a[NR]=$1} END{ if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2 }' || true
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b+0 > 0) printf "%.2f", a/b; else printf "n/a" }'; }
rss_mb() { awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo n/a; }
kb2mb() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }

start_sampler() {  # start_sampler PID FILE: max VmRSS (kB) every 0.2 s into FILE
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

UP_HOST=; FILE_HOST=
sanitize() {  # keep the registry's host names out of the report
  local s=cat
  if [ -n "$FILE_HOST" ] && [ -n "$UP_HOST" ]; then
    sed -e "s#${FILE_HOST//./\\.}#<pypi-files>#g" -e "s#${UP_HOST//./\\.}#<pypi>#g"
  elif [ -n "$UP_HOST" ]; then
    sed "s#${UP_HOST//./\\.}#<pypi>#g"
  else
    $s
  fi
}

finish() {
  local rc=$?
  set +e
  for p in "${SAMPLERS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  if [ "$rc" -ne 0 ]; then
    r ""; r "**The script stopped early (exit $rc); results above are partial.** Last log lines:"; r '```'
    tail -n 15 "$W/logs/script.log" 2>/dev/null | sanitize >> "$REPORT"; r '```'
  fi
  sanitize < "$REPORT" >> "$OUT"
  log "report appended to $OUT"
}
trap finish EXIT

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
# a. Setup: upstream, client environment, tools
# ---------------------------------------------------------------------------------------
log "setup"
# The upstream, found as Cairn finds it (before PIP_* is cleared below).
if [ -n "${PIP_INDEX_URL:-}" ]; then
  UPSTREAM=$PIP_INDEX_URL; UP_FROM="PIP_INDEX_URL"
elif UPSTREAM=$(python3 -m pip config get global.index-url 2>/dev/null) && [ -n "$UPSTREAM" ]; then
  UP_FROM="pip config global.index-url"
else
  UPSTREAM=$(python3 -c 'from pip._internal.models.index import PyPI; print(PyPI.simple_url)')
  UP_FROM="pip's built-in default (PyPI.simple_url)"
fi
case "$UPSTREAM" in */) ;; *) UPSTREAM=$UPSTREAM/ ;; esac
UP_HOST=$(python3 -c 'import sys; from urllib.parse import urlsplit; print(urlsplit(sys.argv[1]).hostname)' "$UPSTREAM")
UP_HOSTPORT=$(python3 -c 'import sys; from urllib.parse import urlsplit; print(urlsplit(sys.argv[1]).netloc)' "$UPSTREAM")
PIP_CERT_FILE=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}

# Clients see only what this script sets: no pip/uv config files or PIP_*/UV_* from the
# machine (PIP_FIND_LINKS in particular would add a local wheel directory), except the CA file.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(PIP|UV)_' || true)
export PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
  PIP_DEFAULT_TIMEOUT=180 UV_PYTHON_DOWNLOADS=never
if [ -n "$PIP_CERT_FILE" ]; then
  export PIP_CERT=$PIP_CERT_FILE SSL_CERT_FILE=$PIP_CERT_FILE REQUESTS_CA_BUNDLE=$PIP_CERT_FILE
fi

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  [ "$(id -u)" -eq 0 ] || die "nginx/wrk missing: run as root (sudo) to install them"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y nginx wrk || { apt-get update && apt-get install -y nginx wrk; }
fi
if [ ! -x "$TOOLS/bin/devpi-server" ] || [ ! -x "$TOOLS/bin/devpi-init" ] || [ ! -x "$TOOLS/bin/uv" ]; then
  log "installing devpi-server and uv into $TOOLS"
  rm -rf "$TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install -q --index-url "$UPSTREAM" devpi-server uv
fi
UV=$TOOLS/bin/uv

for port in $CAIRN_PORT $DEVPI_PORT $NGX_CACHE_PORT $NGX_STATIC_PORT; do
  if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then die "port $port is already in use"; fi
done

# The file host, from one page's JSON (its files' absolute URLs).
FILE_ORIGIN=$(curl -sf --max-time 60 -H 'Accept: application/vnd.pypi.simple.v1+json' "${UPSTREAM}${PAGE_PROJECT}/" |
  python3 -c '
import json, sys
from urllib.parse import urljoin, urlsplit
page_url = sys.argv[1]
for f in json.load(sys.stdin)["files"]:
    u = urlsplit(urljoin(page_url, f["url"]))
    print(f"{u.scheme}://{u.netloc}/"); break' "${UPSTREAM}${PAGE_PROJECT}/") || die "cannot read ${UPSTREAM}${PAGE_PROJECT}/ as PEP 691 JSON"
# Does the upstream offer PEP 658/714 core metadata? (If not, uv reads wheel metadata with Range requests.)
UP_CORE_META=$(curl -sf --max-time 60 -H 'Accept: application/vnd.pypi.simple.v1+json' "${UPSTREAM}${PAGE_PROJECT}/" |
  python3 -c '
import json, sys
files = json.load(sys.stdin)["files"]
n = sum(1 for f in files if f.get("core-metadata") or f.get("dist-info-metadata") or f.get("data-dist-info-metadata"))
print(f"{n} of {len(files)} files")') || UP_CORE_META="?"
FILE_HOST=$(python3 -c 'import sys; from urllib.parse import urlsplit; print(urlsplit(sys.argv[1]).hostname)' "$FILE_ORIGIN")
FILE_HOSTPORT=$(python3 -c 'import sys; from urllib.parse import urlsplit; print(urlsplit(sys.argv[1]).netloc)' "$FILE_ORIGIN")
NREQ=$(grep -cE '^[A-Za-z0-9]' "$REQS")
WHEEL_VERSION=$(sed -nE "s/^${WHEEL_PROJECT}==([^ ;#]+).*/\\1/p" "$REQS" | head -1)
[ -n "$WHEEL_VERSION" ] || die "$WHEEL_PROJECT is not pinned in $REQS"
[ "$PYVER" = 3.11 ] || log "warning: python3 is $PYVER; the requirement set is pinned for CPython 3.11"
log "upstream from $UP_FROM; file host read from its page of $PAGE_PROJECT; $NREQ pinned requirements"

# ---------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------
CAIRN_PID=
start_cairn() {  # start_cairn LABEL DATADIR
  local label=$1 dir=$2
  rm -rf "$dir"
  "$CAIRN" serve --listen "127.0.0.1:$CAIRN_PORT" --data-dir "$dir" --pypi-upstream "$UPSTREAM" \
    --metadata-ttl 1h > "$W/logs/cairn-$label.out" 2> "$W/logs/cairn-$label.err" &
  CAIRN_PID=$!
  PIDS+=("$CAIRN_PID")
  wait_for "$CAIRN_PID" 60 grep -q 'cairn listening on' "$W/logs/cairn-$label.out"
  wait_for "$CAIRN_PID" 10 curl -sf "http://127.0.0.1:$CAIRN_PORT/healthz"
}
stop_cairn() {  # stop_cairn LABEL: keep its counters, then stop it
  curl -s "http://127.0.0.1:$CAIRN_PORT/metrics" > "$W/logs/cairn-metrics-$1.txt" || true
  stop_pid "$CAIRN_PID"
}

DEVPI_PID=
start_devpi() {  # start_devpi LABEL SERVERDIR: fresh server, root/pypi mirroring $UPSTREAM
  local label=$1 dir=$2
  rm -rf "$dir"
  "$TOOLS/bin/devpi-init" --serverdir "$dir" --no-root-pypi --root-passwd "$DEVPI_PW" \
    > "$W/logs/devpi-init-$label.log" 2>&1 || { tail -5 "$W/logs/devpi-init-$label.log" >&2; die "devpi-init failed"; }
  "$TOOLS/bin/devpi-server" --serverdir "$dir" --host 127.0.0.1 --port "$DEVPI_PORT" \
    --mirror-cache-expiry 3600 > "$W/logs/devpi-$label.log" 2>&1 &
  DEVPI_PID=$!
  PIDS+=("$DEVPI_PID")
  wait_for "$DEVPI_PID" 180 curl -sf "http://127.0.0.1:$DEVPI_PORT/+api"
  "$TOOLS/bin/python" - "http://127.0.0.1:$DEVPI_PORT" "$DEVPI_PW" "$UPSTREAM" <<'EOF' >> "$W/logs/devpi-$label.log" 2>&1 || die "could not create devpi's root/pypi mirror"
import base64, json, sys, urllib.request
base, pw, mirror = sys.argv[1:4]
def call(method, path, body, headers={}):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json", **headers})
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)
token = call("POST", "/+login", {"user": "root", "password": pw})["result"]["password"]
auth = base64.b64encode(f"root:{token}".encode()).decode()
print("root/pypi:", call("PUT", "/root/pypi", {"type": "mirror", "mirror_url": mirror}, {"X-Devpi-Auth": auth})["result"])
EOF
}

NGX_PID=
start_nginx() {  # fresh proxy cache every time
  local d=$W/nginx
  [ -z "$NGX_PID" ] || stop_pid "$NGX_PID"
  rm -rf "$d"; mkdir -p "$d"/{cache,tmp,logs}
  local user_line=""
  [ "$(id -u)" -eq 0 ] && user_line="user root;"
  local page_ce=""
  [ -n "${PAGE_ENCODING:-}" ] && page_ce="add_header Content-Encoding $PAGE_ENCODING;"
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
  proxy_cache_path $d/cache levels=1:2 keys_zone=pypi:64m max_size=20g inactive=30d use_temp_path=off;
  log_format cachestatus '\$upstream_cache_status \$status \$request_uri';

  # pip's floor: a caching reverse proxy in front of the upstream index and its file host.
  server {
    listen 127.0.0.1:$NGX_CACHE_PORT;
    access_log $d/logs/cache.log cachestatus;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Accept-Encoding "";
    proxy_ssl_server_name on;
    proxy_cache pypi;
    proxy_cache_valid 200 30d;
    proxy_cache_valid any 1m;
    proxy_ignore_headers Cache-Control Expires Set-Cookie Vary;
    proxy_cache_lock on;
    proxy_buffers 64 64k;
    add_header X-Cache-Status \$upstream_cache_status;

    location /simple/ {
      proxy_pass $UPSTREAM;
      proxy_set_header Host $UP_HOSTPORT;
      proxy_ssl_name $UP_HOST;
      proxy_cache_key \$scheme\$proxy_host\$request_uri|\$http_accept;
      sub_filter '$FILE_ORIGIN' 'http://127.0.0.1:$NGX_CACHE_PORT/files-host/';
      sub_filter_types application/vnd.pypi.simple.v1+json application/vnd.pypi.simple.v1+html;
      sub_filter_once off;
    }
    location /files-host/ {
      proxy_pass $FILE_ORIGIN;
      proxy_set_header Host $FILE_HOSTPORT;
      proxy_ssl_name $FILE_HOST;
      proxy_cache_key \$scheme\$proxy_host\$request_uri;
    }
  }

  # The same bytes Cairn serves, as static files.
  server {
    listen 127.0.0.1:$NGX_STATIC_PORT;
    root $W/static;
    location /page/ { types { } default_type application/vnd.pypi.simple.v1+json; $page_ce }
    location /files/ { types { } default_type application/octet-stream; }
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
# b. Clients
# ---------------------------------------------------------------------------------------
PIP_CMD="python3 -m pip download --no-cache-dir --only-binary=:all: -q -d DEST -r bench/pypi-requirements.txt --index-url INDEX"
UV_CMD="uv pip compile --no-cache --no-config --python-version 3.11 --index-url INDEX bench/pypi-requirements.txt -o /dev/null"
SECS=; COUNT=; DL_BYTES=
pip_dl() {  # pip_dl LABEL INDEX_URL -> SECS, COUNT (files downloaded)
  local label=$1 idx=$2 dest=$W/dl/$1 status=0 t0 t1
  rm -rf "$dest"; mkdir -p "$dest"
  t0=$(now)
  timeout 1800 python3 -m pip download --no-cache-dir --only-binary=:all: -q -d "$dest" \
    -r "$REQS" --index-url "$idx" > "$W/logs/pip-$label.log" 2>&1 || status=$?
  t1=$(now)
  COUNT=$(find "$dest" -type f | wc -l)
  if [ "$status" -eq 0 ] && [ -z "$DL_BYTES" ]; then DL_BYTES=$(du -sb "$dest" | cut -f1); fi
  if [ "$status" -eq 0 ]; then SECS=$(sub "$t0" "$t1"); else SECS=FAIL; fi
  log "pip $label: ${SECS}s, $COUNT files (exit $status)"
  [ "$status" -eq 0 ] || tail -n 5 "$W/logs/pip-$label.log" | sanitize >&2
  rm -rf "$dest"
}
uv_compile() {  # uv_compile LABEL INDEX_URL -> SECS, COUNT (packages resolved)
  local label=$1 idx=$2 status=0 t0 t1
  t0=$(now)
  (cd "$REPO" && timeout 1800 "$UV" pip compile --no-cache --no-config --python-version 3.11 \
     --index-url "$idx" bench/pypi-requirements.txt -o /dev/null) > "$W/logs/uv-$label.log" 2>&1 || status=$?
  t1=$(now)
  COUNT=$(sed -nE 's/.*Resolved ([0-9]+) packages?.*/\1/p' "$W/logs/uv-$label.log" | tail -1)
  if [ "$status" -eq 0 ]; then SECS=$(sub "$t0" "$t1"); else SECS=FAIL; fi
  log "uv $label: ${SECS}s, ${COUNT:-?} packages resolved (exit $status)"
  [ "$status" -eq 0 ] || tail -n 5 "$W/logs/uv-$label.log" | sanitize >&2
}

declare -A T N   # T[config]="s1 s2 ..."; N[config]="count1 count2 ..."
add() { T[$1]="${T[$1]:-} $SECS"; N[$1]="${N[$1]:-} ${COUNT:-?}"; }

CAIRN_IDX="http://127.0.0.1:$CAIRN_PORT/pypi/simple/"
DEVPI_IDX="http://127.0.0.1:$DEVPI_PORT/root/pypi/+simple/"
NGX_IDX="http://127.0.0.1:$NGX_CACHE_PORT/simple/"

CAIRN_START_RSS=; DEVPI_START_RSS=
log "cold: $RUNS rounds of direct (pip, uv) / Cairn cold (uv, pip) / devpi cold / nginx cold"
for i in $(seq 1 "$RUNS"); do
  pip_dl "direct-$i" "$UPSTREAM"; add pip_direct
  uv_compile "direct-$i" "$UPSTREAM"; add uv_direct

  start_cairn "uv-cold-$i" "$W/cairn-uv-$i"
  [ -n "$CAIRN_START_RSS" ] || { sleep 1; CAIRN_START_RSS=$(rss_mb "$CAIRN_PID"); }
  uv_compile "cairn-cold-$i" "$CAIRN_IDX"; add uv_cairn_cold
  stop_cairn "uv-cold-$i"; rm -rf "$W/cairn-uv-$i"

  start_cairn "cold-$i" "$W/cairn-$i"
  pip_dl "cairn-cold-$i" "$CAIRN_IDX"; add pip_cairn_cold
  if [ "$i" -lt "$RUNS" ]; then stop_cairn "cold-$i"; rm -rf "$W/cairn-$i"; fi

  start_devpi "cold-$i" "$W/devpi-$i"
  [ -n "$DEVPI_START_RSS" ] || { sleep 1; DEVPI_START_RSS=$(rss_mb "$DEVPI_PID"); }
  pip_dl "devpi-cold-$i" "$DEVPI_IDX"; add pip_devpi_cold
  if [ "$i" -lt "$RUNS" ]; then stop_pid "$DEVPI_PID"; rm -rf "$W/devpi-$i"; fi

  start_nginx
  pip_dl "nginx-cold-$i" "$NGX_IDX"; add pip_nginx_cold
done
# The last cold Cairn, devpi and nginx stay up with their caches: they serve the warm runs.

NGX_COLD_LINES=$(wc -l < "$W/nginx/logs/cache.log")
log "warm: $RUNS rounds of pip through Cairn / devpi / nginx"
for i in $(seq 1 "$RUNS"); do
  pip_dl "cairn-warm-$i" "$CAIRN_IDX"; add pip_cairn_warm
  pip_dl "devpi-warm-$i" "$DEVPI_IDX"; add pip_devpi_warm
  pip_dl "nginx-warm-$i" "$NGX_IDX"; add pip_nginx_warm
done
# What the warm nginx runs got from its cache (HIT) and what went upstream (anything else).
NGX_WARM_STATUS=$(tail -n +"$((NGX_COLD_LINES + 1))" "$W/nginx/logs/cache.log" | awk '{print $1" "$2}' | sort | uniq -c |
  awk '{printf "%s%s %s: %s", (NR>1?", ":""), $2, $3, $1}')
NGX_CACHE_MB=$(du -sm "$W/nginx/cache" | cut -f1)
log "warm: one untimed uv run through Cairn and devpi each (uv asks for what pip does not), then $RUNS timed rounds"
uv_compile "cairn-prime" "$CAIRN_IDX"
uv_compile "devpi-prime" "$DEVPI_IDX"
for i in $(seq 1 "$RUNS"); do
  uv_compile "cairn-warm-$i" "$CAIRN_IDX"; add uv_cairn_warm
  uv_compile "devpi-warm-$i" "$DEVPI_IDX"; add uv_devpi_warm
done
sleep 2
CAIRN_IDLE_RSS=$(rss_mb "$CAIRN_PID"); DEVPI_IDLE_RSS=$(rss_mb "$DEVPI_PID")

# shellcheck disable=SC2086
med() { median ${T[$1]:-}; }
fmt_runs() { echo "${T[$1]:-}" | sed 's/^ //; s/ /, /g'; }
fmt_n() { echo "${N[$1]:-}" | tr ' ' '\n' | grep -v '^$' | sort -u | paste -sd/ -; }
row() { r "| $1 | $(med "$2") | $(fmt_runs "$2") | $(fmt_n "$2") |"; }

DL_MB=$(awk -v b="${DL_BYTES:-0}" 'BEGIN{printf "%.0f", b/1048576}')
{
  r "## PyPI: pip download / uv pip compile through Cairn, devpi and nginx — $(date -u '+%Y-%m-%d %H:%M UTC')"
  r ""
  r "Command: \`$CMDLINE\` (from the repository root)."
  r ""
  r "Machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), load at start $(cut -d' ' -f1-3 /proc/loadavg). Python $(python3 -c 'import platform; print(platform.python_version())'), pip $(python3 -m pip --version | awk '{print $2}'), $("$UV" --version), devpi-server $("$TOOLS/bin/devpi-server" --version 2>/dev/null), $(nginx -v 2>&1 | sed 's/.*: //'), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}')."
  r "Cairn: \`$CAIRN\` built from $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$( [ -n "$(git -C "$REPO" status --porcelain 2>/dev/null | grep -vE '^.. bench/')" ] && echo ' (+ uncommitted changes outside bench/)'), \`--metadata-ttl 1h\`. Upstream: \`$UPSTREAM\` from $UP_FROM; files on \`$FILE_ORIGIN\` (read from its page of \`$PAGE_PROJECT\`)."
  r "devpi: \`devpi-init --no-root-pypi\`, then \`devpi-server --mirror-cache-expiry 3600\` and root/pypi created as \`{\"type\": \"mirror\", \"mirror_url\": \"$UPSTREAM\"}\` (other settings default: devpi serves the files itself; core-metadata off). nginx: \`proxy_cache\` of \`/simple/\` (keyed on Accept) and of the file host under \`/files-host/\` (page URLs rewritten with \`sub_filter\`, upstream asked with \`Accept-Encoding: \"\"\`), 30 days, never revalidating. Core metadata (PEP 658) on the upstream's page of \`$PAGE_PROJECT\`: $UP_CORE_META."
  r ""
  r "### \`pip download\` of \`bench/pypi-requirements.txt\` ($NREQ pinned requirements, wheels only, $NREQ files, about ${DL_MB:-?} MB)"
  r ""
  r "Command per run: \`$PIP_CMD\` (empty DEST, no pip cache, no pip config, \`PIP_FIND_LINKS=\`). Seconds, median of $RUNS (all runs listed). Cold = empty proxy store, fresh per run; warm = the store the last cold run filled."
  r ""
  r "| Configuration | Median (s) | Runs (s) | Files |"
  r "|---|---:|---|---:|"
  row "direct to \`<pypi>\`" pip_direct
  row "Cairn cold" pip_cairn_cold
  row "Cairn warm" pip_cairn_warm
  row "devpi cold" pip_devpi_cold
  row "devpi warm" pip_devpi_warm
  row "nginx proxy_cache cold" pip_nginx_cold
  row "nginx proxy_cache warm (pip's floor)" pip_nginx_warm
  r ""
  r "nginx's cache held $NGX_CACHE_MB MB after the runs; its warm runs' requests by cache status and HTTP status: ${NGX_WARM_STATUS:-none}."
  r ""
  r "### \`uv pip compile\` of the same file"
  r ""
  r "Command per run: \`$UV_CMD\` (no uv cache, no uv config). Cold Cairn = a fresh store per run; before the warm runs, one untimed uv run through Cairn and devpi each fetched what uv asks for beyond pip (PEP 658 \`.metadata\` files where offered)."
  r ""
  r "| Configuration | Median (s) | Runs (s) | Packages resolved |"
  r "|---|---:|---|---:|"
  row "direct to \`<pypi>\`" uv_direct
  row "Cairn cold" uv_cairn_cold
  row "Cairn warm" uv_cairn_warm
  row "devpi warm" uv_devpi_warm
  r ""
  r "Ratios of medians (lower is better for Cairn):"
  r ""
  r "| Ratio | Value |"
  r "|---|---:|"
  r "| pip: Cairn warm / nginx warm (floor) | $(ratio "$(med pip_cairn_warm)" "$(med pip_nginx_warm)") |"
  r "| pip: Cairn cold / direct | $(ratio "$(med pip_cairn_cold)" "$(med pip_direct)") |"
  r "| pip: Cairn warm / direct | $(ratio "$(med pip_cairn_warm)" "$(med pip_direct)") |"
  r "| pip: devpi cold / Cairn cold | $(ratio "$(med pip_devpi_cold)" "$(med pip_cairn_cold)") |"
  r "| pip: devpi warm / Cairn warm | $(ratio "$(med pip_devpi_warm)" "$(med pip_cairn_warm)") |"
  r "| pip: devpi warm / nginx warm | $(ratio "$(med pip_devpi_warm)" "$(med pip_nginx_warm)") |"
  r "| uv: Cairn cold / direct | $(ratio "$(med uv_cairn_cold)" "$(med uv_direct)") |"
  r "| uv: Cairn warm / direct | $(ratio "$(med uv_cairn_warm)" "$(med uv_direct)") |"
  r "| uv: devpi warm / Cairn warm | $(ratio "$(med uv_devpi_warm)" "$(med uv_cairn_warm)") |"
  r ""
}

# ---------------------------------------------------------------------------------------
# c + d. wrk throughput and memory
# ---------------------------------------------------------------------------------------
log "wrk: fetching the exact bytes Cairn serves"
wheel_url() {  # wheel_url PAGE_URL: absolute URL of the pinned $WHEEL_PROJECT wheel on that page
  curl -sf -H 'Accept: application/vnd.pypi.simple.v1+json' "$1" | python3 -c '
import json, sys
from urllib.parse import urljoin
page_url, prefix = sys.argv[1], sys.argv[2]
for f in json.load(sys.stdin)["files"]:
    if f["filename"].startswith(prefix) and f["filename"].endswith(".whl"):
        print(urljoin(page_url, f["url"])); break' "$1" "$WHEEL_PROJECT-$WHEEL_VERSION-"
}
page_cairn="${CAIRN_IDX}${PAGE_PROJECT}/"
page_devpi="${DEVPI_IDX}${PAGE_PROJECT}/"
whl_cairn=$(wheel_url "${CAIRN_IDX}${WHEEL_PROJECT}/")
whl_devpi=$(wheel_url "${DEVPI_IDX}${WHEEL_PROJECT}/")
[ -n "$whl_cairn" ] && [ -n "$whl_devpi" ] || die "no $WHEEL_PROJECT $WHEEL_VERSION wheel on Cairn's or devpi's page"
WHEEL_NAME=${whl_cairn##*/}
for u in "$whl_cairn" "$whl_devpi"; do curl -sf -o /dev/null "$u"; done  # make sure both hold it
curl -sf -D "$W/tmp/page-cairn.h" -H "Accept: $PIP_ACCEPT" -H "Accept-Encoding: $PIP_AE" -o "$W/static/page/$PAGE_PROJECT" "$page_cairn"
curl -sf -D "$W/tmp/page-devpi.h" -H "Accept: $PIP_ACCEPT" -H "Accept-Encoding: $PIP_AE" -o "$W/tmp/page-devpi" "$page_devpi"
curl -sf -o "$W/static/files/$WHEEL_NAME" "$whl_cairn"
curl -sf -o "$W/tmp/wheel-devpi" "$whl_devpi"
hdr() { awk -v h="$2" 'BEGIN{IGNORECASE=1} tolower($1)==tolower(h)":" {sub(/\r$/,""); $1=""; sub(/^ /,""); v=$0} END{print v}' "$1"; }
PAGE_ENCODING=$(hdr "$W/tmp/page-cairn.h" content-encoding)
PAGE_TYPE=$(hdr "$W/tmp/page-cairn.h" content-type)
DEVPI_PAGE_TYPE=$(hdr "$W/tmp/page-devpi.h" content-type)
DEVPI_PAGE_ENC=$(hdr "$W/tmp/page-devpi.h" content-encoding)
if cmp -s "$W/static/files/$WHEEL_NAME" "$W/tmp/wheel-devpi"; then same_wheel="identical"; else same_wheel="**different**"; fi
start_nginx   # the static server now knows the page's Content-Encoding (the proxy cache is no longer needed)
size_of() { stat -c %s "$1"; }
human() { awk -v b="$1" 'BEGIN{ if (b >= 1048576) printf "%.1f MB", b/1048576; else printf "%.1f KB", b/1024 }'; }

declare -A WRPS WP99 WERR
to_ms() { awk -v v="$1" 'BEGIN{ n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /m$/) n*=60000; else if (v ~ /s$/) n*=1000; printf "%.2f", n }'; }
run_wrk() {  # run_wrk KEY CONC URL ["Header: v|Header: v"]
  local key=$1 conc=$2 url=$3 hdrs=${4:-} threads=2 out rps p99 errs h
  local args=()
  [ "$conc" -ge 2 ] || threads=1
  if [ -n "$hdrs" ]; then
    IFS='|' read -r -a hs <<< "$hdrs"
    for h in "${hs[@]}"; do args+=(-H "$h"); done
  fi
  out=$(wrk -t"$threads" -c"$conc" -d"${WRK_SECS}s" --timeout 10s --latency "${args[@]}" "$url" 2>&1 || true)
  { echo "== $key $url"; echo "$out"; } >> "$W/logs/wrk.log"
  rps=$(echo "$out" | awk '/^Requests\/sec/{printf "%.0f", $2}')
  p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  errs=$(echo "$out" | awk '/Non-2xx/{n+=$NF} /Socket errors/{for(i=1;i<=NF;i++) if ($i ~ /^[0-9]+,?$/) n+=$i+0} END{print n+0}')
  WRPS[$key]="${WRPS[$key]:-} ${rps:-0}"
  WP99[$key]="${WP99[$key]:-} $(to_ms "${p99:-0}")"
  WERR[$key]=$(( ${WERR[$key]:-0} + errs ))
  log "wrk $key: ${rps:-?} req/s, p99 ${p99:-?}, errors $errs"
}

PIP_HDRS="Accept: $PIP_ACCEPT|Accept-Encoding: $PIP_AE"
declare -A URL HDR
URL[page,cairn]=$page_cairn; URL[page,devpi]=$page_devpi; URL[page,nginx]="http://127.0.0.1:$NGX_STATIC_PORT/page/$PAGE_PROJECT"
HDR[page,cairn]=$PIP_HDRS;   HDR[page,devpi]=$PIP_HDRS;   HDR[page,nginx]=$PIP_HDRS
URL[wheel,cairn]=$whl_cairn; URL[wheel,devpi]=$whl_devpi; URL[wheel,nginx]="http://127.0.0.1:$NGX_STATIC_PORT/files/$WHEEL_NAME"
HDR[wheel,cairn]="Accept-Encoding: $PIP_AE"; HDR[wheel,devpi]="Accept-Encoding: $PIP_AE"; HDR[wheel,nginx]="Accept-Encoding: $PIP_AE"
for srv in cairn devpi nginx; do
  for res in page wheel; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Accept: $PIP_ACCEPT" "${URL[$res,$srv]}")
    [ "$code" = 200 ] || die "$srv answers $code for ${URL[$res,$srv]}"
  done
done

CAIRN_PEAK=0; DEVPI_PEAK=0
log "wrk: $WRK_ROUNDS round(s) x {page, wheel} x {c1, c64} x {cairn, devpi, nginx}, ${WRK_SECS}s each"
for round in $(seq 1 "$WRK_ROUNDS"); do
  for res in page wheel; do
    for conc in 1 64; do
      for srv in cairn devpi nginx; do
        samp=
        if [ "$conc" -eq 64 ] && [ "$srv" = cairn ]; then start_sampler "$CAIRN_PID" "$W/tmp/peak"; samp=$SAMPLER_PID; fi
        if [ "$conc" -eq 64 ] && [ "$srv" = devpi ]; then start_sampler "$DEVPI_PID" "$W/tmp/peak"; samp=$SAMPLER_PID; fi
        run_wrk "$res,$conc,$srv" "$conc" "${URL[$res,$srv]}" "${HDR[$res,$srv]}"
        if [ -n "$samp" ]; then
          stop_sampler "$samp"; pk=$(cat "$W/tmp/peak")
          if [ "$srv" = cairn ] && [ "$pk" -gt "$CAIRN_PEAK" ]; then CAIRN_PEAK=$pk; fi
          if [ "$srv" = devpi ] && [ "$pk" -gt "$DEVPI_PEAK" ]; then DEVPI_PEAK=$pk; fi
        fi
      done
    done
  done
done
sleep 2
CAIRN_AFTER_RSS=$(rss_mb "$CAIRN_PID"); DEVPI_AFTER_RSS=$(rss_mb "$DEVPI_PID")

# shellcheck disable=SC2086
wmed() { median ${WRPS[$1]}; }
# shellcheck disable=SC2086
pmed() { median ${WP99[$1]}; }
{
  r "### Hit throughput (wrk, ${WRK_SECS} s per run, median of $WRK_ROUNDS)"
  r ""
  r "Resources, both already cached: the simple page of \`$PAGE_PROJECT\` asked for with pip's headers (\`Accept: $PIP_ACCEPT\`, \`Accept-Encoding: $PIP_AE\`): Cairn answers $(human "$(size_of "$W/static/page/$PAGE_PROJECT")") of \`${PAGE_TYPE:-?}\`${PAGE_ENCODING:+ (Content-Encoding $PAGE_ENCODING)}, devpi $(human "$(size_of "$W/tmp/page-devpi")") of \`${DEVPI_PAGE_TYPE:-?}\`${DEVPI_PAGE_ENC:+ (Content-Encoding $DEVPI_PAGE_ENC)}; and the wheel \`$WHEEL_NAME\` ($(human "$(size_of "$W/static/files/$WHEEL_NAME")"); Cairn's and devpi's bytes are $same_wheel). nginx serves the bytes Cairn returned as static files (sendfile). c=1 uses 1 wrk thread, c=64 uses 2. wrk shares the $(nproc) cores with the server."
  r ""
  r "Command: \`wrk -tT -cC -d${WRK_SECS}s --timeout 10s --latency -H ... URL\`."
  r ""
  r "| Resource | Conc. | Cairn req/s | devpi req/s | nginx static req/s | Cairn p99 ms | devpi p99 ms | nginx p99 ms | Cairn/nginx | Cairn/devpi | errors C/D/N |"
  r "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for res in page wheel; do
    case $res in page) name="simple page \`$PAGE_PROJECT\`" ;; wheel) name="wheel \`$WHEEL_NAME\`" ;; esac
    for conc in 1 64; do
      c=$(wmed "$res,$conc,cairn"); d=$(wmed "$res,$conc,devpi"); n=$(wmed "$res,$conc,nginx")
      r "| $name | $conc | $c | $d | $n | $(pmed "$res,$conc,cairn") | $(pmed "$res,$conc,devpi") | $(pmed "$res,$conc,nginx") | $(ratio "$c" "$n") | $(ratio "$c" "$d") | ${WERR[$res,$conc,cairn]}/${WERR[$res,$conc,devpi]}/${WERR[$res,$conc,nginx]} |"
    done
  done
  r ""
  r "### Memory (VmRSS, MB)"
  r ""
  r "| Process | Idle after start | Idle after the pip/uv runs | Peak during the c=64 wrk runs (0.2 s samples) | Idle after wrk |"
  r "|---|---:|---:|---:|---:|"
  r "| Cairn | $CAIRN_START_RSS | $CAIRN_IDLE_RSS | $(kb2mb "$CAIRN_PEAK") | $CAIRN_AFTER_RSS |"
  r "| devpi-server | $DEVPI_START_RSS | $DEVPI_IDLE_RSS | $(kb2mb "$DEVPI_PEAK") | $DEVPI_AFTER_RSS |"
  r ""
}

# ---------------------------------------------------------------------------------------
# Cairn's logs and metrics
# ---------------------------------------------------------------------------------------
stop_cairn "warm"
stop_pid "$DEVPI_PID"
stop_pid "$NGX_PID"
{
  r "### Cairn health during the run"
  r ""
  r "Responses other than 200 in Cairn's /metrics (all instances, summed; wrk's requests included; 206 = answers to Range requests, which uv sends for wheel metadata when a page offers no core metadata):"
  r '```'
  cat "$W"/logs/cairn-metrics-*.txt 2>/dev/null | grep -E '^cairn_http_requests_total\{' | grep -v 'status="200"' |
    awk '{s[$1]+=$2} END{for (k in s) print s[k], k}' | sort -rn > "$W/tmp/non200" || true
  if [ -s "$W/tmp/non200" ]; then cat "$W/tmp/non200" >> "$REPORT"; else r "none"; fi
  r '```'
  r ""
  r "Upstream requests by status (all instances, summed):"
  r '```'
  cat "$W"/logs/cairn-metrics-*.txt 2>/dev/null | grep -E '^cairn_upstream_requests_total\{' |
    awk '{s[$1]+=$2} END{for (k in s) print s[k], k}' | sort -rn >> "$REPORT" || true
  r '```'
  r ""
  r "Warnings/errors in Cairn's logs (all instances; count, then up to 15 distinct messages):"
  r '```'
  cat "$W"/logs/cairn-*.err | sed 's/\x1b\[[0-9;]*m//g' | grep -E 'WARN|ERROR' > "$W/tmp/cairn-warn" || true
  echo "count: $(wc -l < "$W/tmp/cairn-warn")" >> "$REPORT"
  sed -E 's/^[0-9T:.-]+Z? *//' "$W/tmp/cairn-warn" | sort | uniq -c | sort -rn | head -15 | cut -c1-400 >> "$REPORT"
  r '```'
  r ""
}
log "done"
