# bench/lib.sh: helpers shared by the benchmark scripts (sourced, not run).
#
# The sourcing script sets B (its scratch directory) before calling anything that writes
# files, and CAIRN (the binary) before start_cairn. Servers started here are recorded in
# PIDS and RSS samplers in SAMPLERS; call lib_cleanup from the script's EXIT trap.
# Nothing here names a registry host: upstreams come from the machine's client configuration.

PIDS=()
SAMPLERS=()

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }   # elapsed T0 T1
# median N...: numeric median, non-numbers (FAIL, n/a) ignored; "n/a" when none.
median() {
  printf '%s\n' "$@" | grep -E '^[0-9]+(\.[0-9]+)?$' | sort -g |
    awk '{a[NR]=$1} END{ if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2 }'
}
# ratio A B: A/B with two decimals, "n/a" when either is not a number or B is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b+0 > 0) printf "%.2f", a/b; else printf "n/a" }'; }
# le A B: true when both are numbers and A <= B.
le() { awk -v a="$1" -v b="$2" 'BEGIN{ exit !(a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && a+0 <= b+0) }'; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
rss_mb() { awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo n/a; }
kb2mb() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
human_bytes() { awk -v b="$1" 'BEGIN{ if (b >= 1048576) printf "%.1f MB", b/1048576; else printf "%.0f KB", b/1024 }'; }
machine() { echo "$(nproc) cores, $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, load at start $(cut -d' ' -f1-3 /proc/loadavg)"; }

# Peak-RSS sampler: every 0.2 s while PID lives, writes the max VmRSS seen (kB) to FILE.
# start_sampler PID FILE -> SAMPLER_PID;  stop_sampler SAMPLER_PID;  then read FILE.
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

stop_pid() {  # TERM, up to 15 s grace, then KILL
  local pid=$1
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

lib_cleanup() {  # stop every sampler and server this script started
  local p
  for p in "${SAMPLERS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
}

wait_for() {  # wait_for PID SECONDS CMD...: until CMD succeeds while PID lives
  local pid=$1 secs=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { log "process $pid died while waiting for: $*"; return 1; }
    [ "$(date +%s)" -lt "$deadline" ] || { log "timeout waiting for: $*"; return 1; }
    sleep 0.2
  done
}

port_free() { ! curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/"; }

need_tools() {  # need_tools CMD PKG...: install PKGs with apt-get unless CMD exists
  local cmd=$1; shift
  command -v "$cmd" >/dev/null && return 0
  [ "$(id -u)" -eq 0 ] || { log "$cmd missing: run as root (sudo) to install $*"; exit 1; }
  log "installing $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- Cairn ------------------------------------------------------------------------------
# start_cairn LABEL DATADIR ARGS...: `cairn serve --data-dir DATADIR ARGS...`, stdout/stderr
# in $B/logs/cairn-LABEL.{out,err}; returns once it prints `cairn listening on http://…`.
CAIRN_PID=
start_cairn() {
  local label=$1 dir=$2; shift 2
  "$CAIRN" serve --data-dir "$dir" "$@" > "$B/logs/cairn-$label.out" 2> "$B/logs/cairn-$label.err" &
  CAIRN_PID=$!
  PIDS+=("$CAIRN_PID")
  wait_for "$CAIRN_PID" 60 grep -q 'cairn listening on http://' "$B/logs/cairn-$label.out" ||
    { tail -n 20 "$B/logs/cairn-$label.err" >&2; return 1; }
}

# --- nginx ------------------------------------------------------------------------------
# start_nginx DIR: runs nginx in the foreground (tracked in PIDS) with DIR/nginx.conf, which
# the caller writes; the conf must `pid DIR/nginx.pid;` and may use DIR/{tmp,logs}.
# Waits until PROBE_URL (default: nothing) answers.  stop_nginx stops it.
NGX_PID=
start_nginx() {
  local d=$1 probe=${2:-}
  mkdir -p "$d"/{tmp,logs}
  nginx -t -q -p "$d/" -e "$d/logs/error.log" -c "$d/nginx.conf"
  nginx -p "$d/" -e "$d/logs/error.log" -c "$d/nginx.conf" -g 'daemon off;' &
  NGX_PID=$!
  PIDS+=("$NGX_PID")
  if [ -n "$probe" ]; then wait_for "$NGX_PID" 20 curl -s -o /dev/null "$probe"; else sleep 0.5; fi
}
stop_nginx() { [ -n "$NGX_PID" ] && stop_pid "$NGX_PID"; NGX_PID=; }
# nginx_common DIR: the lines every bench nginx.conf starts with (user, pid, temp paths).
nginx_common() {
  local d=$1
  [ "$(id -u)" -eq 0 ] && echo "user root;"
  cat <<EOF
worker_processes 2;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 4096; }
EOF
}
nginx_http_common() {
  local d=$1
  cat <<EOF
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
EOF
}

# --- wrk --------------------------------------------------------------------------------
# run_wrk KEY CONC URL ["Header: v|Header: v"]: one wrk run of WRK_SECS; appends the rate of
# 2xx/3xx answers (req/s; wrk's own figure counts error answers too) to WRPS[KEY], p99 (ms) to
# WP99[KEY], adds non-2xx/3xx answers + socket errors to WERR[KEY]; raw output in
# $B/logs/wrk.log. The caller declares: declare -A WRPS WP99 WERR
to_ms() { awk -v v="$1" 'BEGIN{ n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /m$/) n*=60000; else if (v ~ /s$/) n*=1000; printf "%.2f", n }'; }
run_wrk() {
  local key=$1 conc=$2 url=$3 hdrs=${4:-} threads=2 out rps p99 errs h
  local args=()
  [ "$conc" -ge 2 ] || threads=1   # wrk needs connections >= threads
  if [ -n "$hdrs" ]; then
    IFS='|' read -r -a hs <<< "$hdrs"
    for h in "${hs[@]}"; do args+=(-H "$h"); done
  fi
  out=$(wrk -t"$threads" -c"$conc" -d"${WRK_SECS:-10}s" --timeout 10s --latency "${args[@]}" "$url" 2>&1 || true)
  { echo "== $key $url"; echo "$out"; } >> "$B/logs/wrk.log"
  rps=$(echo "$out" | awk '/ requests in /{n=$1; d=$4; sub(/,$/, "", d); t=d+0; if (d ~ /ms$/) t/=1000; else if (d ~ /m$/) t*=60}
                          /Non-2xx/{bad=$NF} END{ if (t > 0) printf "%.0f", (n-bad)/t }')
  p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  errs=$(echo "$out" | awk '/Non-2xx/{n+=$NF} /Socket errors/{for(i=1;i<=NF;i++) if ($i ~ /^[0-9]+,?$/) n+=$i+0} END{print n+0}')
  WRPS[$key]="${WRPS[$key]:-} ${rps:-0}"
  WP99[$key]="${WP99[$key]:-} $(to_ms "${p99:-0}")"
  WERR[$key]=$(( ${WERR[$key]:-0} + errs ))
  log "wrk $key: ${rps:-?} req/s, p99 ${p99:-?}, errors $errs"
}

# --- apt --------------------------------------------------------------------------------
# apt_archive_url: the first `deb` archive in the machine's apt sources whose path ends in
# /debian (deb822 `URIs:` in sources.list.d/*.sources, or one-line `deb` entries), no slash.
apt_archive_url() {
  local f
  {
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      awk 'BEGIN{RS=""; IGNORECASE=1}
           { deb=0; uris="" ; n=split($0, L, "\n")
             for (i=1;i<=n;i++) { l=L[i]; if (l ~ /^#/) continue
               if (l ~ /^Types:/) { sub(/^Types:[ \t]*/, "", l); if (l ~ /(^|[ \t])deb([ \t]|$)/) deb=1 }
               if (l ~ /^URIs:/)  { sub(/^URIs:[ \t]*/, "", l); uris=uris " " l } }
             if (deb) { m=split(uris, U, /[ \t]+/); for (j=1;j<=m;j++) if (U[j] != "") print U[j] } }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      sed -nE 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' "$f"
    done
  } | sed -E 's#/+$##' | grep -E '^[a-z]+://[^/]+/(.*/)?debian$' | head -1
}

# apt_private DIR SOURCES_LINE [PROXY]: a private apt root under DIR (fresh state and cache,
# an empty dpkg status so every dependency is downloaded, none of the machine's apt
# configuration); Acquire::http::Proxy is PROXY, else DIRECT. Use with apt_run DIR args...
apt_private() {
  local dir=$1 line=$2 proxy=${3:-DIRECT}
  rm -rf "$dir"
  mkdir -p "$dir"/etc/{apt.conf.d,sources.list.d,preferences.d,trusted.gpg.d} \
           "$dir"/state/lists/partial "$dir"/cache/archives/partial "$dir"/log
  : > "$dir/state/status"
  echo "$line" > "$dir/etc/sources.list"
  cat > "$dir/etc/apt.conf" <<EOC
Dir::State "$dir/state"; Dir::State::status "$dir/state/status"; Dir::Cache "$dir/cache"; Dir::Log "$dir/log";
Dir::Etc "$dir/etc"; Dir::Etc::Main "$dir/etc/apt.conf"; Dir::Etc::Parts "$dir/etc/apt.conf.d";
Dir::Etc::SourceList "$dir/etc/sources.list"; Dir::Etc::SourceParts "$dir/etc/sources.list.d";
Dir::Etc::Preferences "$dir/etc/preferences"; Dir::Etc::PreferencesParts "$dir/etc/preferences.d";
Dir::Etc::Trusted "$dir/etc/trusted.gpg"; Dir::Etc::TrustedParts "$dir/etc/trusted.gpg.d";
Debug::NoLocking "1"; APT::Sandbox::User "root"; Acquire::Languages "none"; Acquire::PDiffs "false"; Acquire::Retries "0";
Acquire::http::Proxy "$proxy";
EOC
}
apt_run() {  # apt_run DIR apt-get-args...
  local dir=$1; shift
  env -u http_proxy -u HTTP_PROXY -u https_proxy -u HTTPS_PROXY APT_CONFIG="$dir/etc/apt.conf" apt-get "$@"
}

# test_ca DIR: a throwaway CA (DIR/ca.crt) and a certificate for 127.0.0.1 it signed
# (DIR/server.crt, DIR/server.key), P-256 as a modern deployment would use.
test_ca() {
  (
    cd "$1"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
      -subj "/CN=bench CA" -days 2 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
      -subj "/CN=127.0.0.1" 2>/dev/null
    echo "subjectAltName=IP:127.0.0.1" > san.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial 1 -days 2 \
      -extfile san.ext -out server.crt 2>/dev/null
  )
}
