# Shared helpers for the kiln-bench scenarios (sourced, not run).
# Everything listens on 127.0.0.1 only, on ports away from Kiln's and
# Pebble's defaults (other programs may hold those on a shared machine).
set -euo pipefail

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${KILN_BENCH_BIN:-$BENCH_ROOT/target/release}
WORK=${KILN_BENCH_WORK:-/tmp/kiln-bench}
RESULTS=${KILN_BENCH_RESULTS:-$BENCH_ROOT/bench/results}

# Ports (override through the environment).
KILN_PORT=${KILN_PORT:-24443}            # embedded Kiln's ACME HTTPS
HTTP01_PORT=${HTTP01_PORT:-25002}        # where both CAs validate http-01 (kiln-bench's responder)
TLSALPN01_PORT=${TLSALPN01_PORT:-25001}  # unused by the bench, kept off 5001
PEBBLE_PORT=${PEBBLE_PORT:-24000}
PEBBLE_MGMT_PORT=${PEBBLE_MGMT_PORT:-24001}
CHALLTEST_DNS_PORT=${CHALLTEST_DNS_PORT:-24053}
CHALLTEST_MGMT_PORT=${CHALLTEST_MGMT_PORT:-24055}

mkdir -p "$WORK" "$RESULTS"
say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

port_free() { ! ss -ltn "sport = :$1" | grep -q LISTEN; }
require_free() { for p in "$@"; do port_free "$p" || { say "port $p is taken; set another"; exit 1; }; done; }

wait_url() { # url [cacert]
  local url=$1 ca=${2:-}
  for _ in $(seq 1 200); do
    if [ -n "$ca" ]; then curl -fsS --cacert "$ca" "$url" >/dev/null 2>&1 && return 0
    else curl -fsS -k "$url" >/dev/null 2>&1 && return 0; fi
    sleep 0.1
  done
  say "$url did not answer"; return 1
}

# Processes started here, stopped on exit (by pid, never by name).
STARTED_PIDS=()
stop_started() {
  [ ${#STARTED_PIDS[@]} -eq 0 ] && return 0
  kill -TERM "${STARTED_PIDS[@]}" 2>/dev/null || true
  for _ in $(seq 1 50); do
    local alive=0
    for p in "${STARTED_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.1
  done
  kill -KILL "${STARTED_PIDS[@]}" 2>/dev/null || true
  STARTED_PIDS=()
}
trap stop_started EXIT

# Three fake CT logs, each its own process (and operator), so their CPU is
# measured apart from Kiln's: a real deployment's logs run elsewhere. Sets
# CT_LOG_PIDS, CT_LOG_URLS and CT_LOG_FLAGS (kiln's --ct-log flags).
start_fake_ct_logs() {
  CT_LOG_PIDS=(); CT_LOG_URLS=(); CT_LOG_FLAGS=()
  local i out url key
  for i in 0 1 2; do
    out=$WORK/ct-log-$i.out; : >"$out"
    "$BIN/fake-ct-log" --listen 127.0.0.1:0 >"$out" 2>"$WORK/ct-log-$i.log" &
    CT_LOG_PIDS+=("$!"); STARTED_PIDS+=("$!")
    for _ in $(seq 1 100); do grep -q '^public_key=' "$out" && break; sleep 0.05; done
    url=$(sed -n 1p "$out"); key=$(sed -n 's/^public_key=//p' "$out")
    [ -n "$url" ] && [ -n "$key" ] || { say "fake-ct-log $i did not start"; exit 1; }
    CT_LOG_URLS+=("$url"); CT_LOG_FLAGS+=(--ct-log "$url=$key")
  done
  say "fake CT logs (pids ${CT_LOG_PIDS[*]}) at ${CT_LOG_URLS[*]}"
}

# Embedded Kiln on a fresh data directory, with its admin port (for the
# database counters) and, unless KILN_INPROCESS_CT=1, the fake CT logs as
# processes of their own. Sets KILN_PID, KILN_DIR, KILN_ADMIN_URL.
KILN_ADMIN_PORT=${KILN_ADMIN_PORT:-24442}
start_kiln_embedded() {
  KILN_DIR=$WORK/kiln-embedded
  rm -rf "$KILN_DIR"; mkdir -p "$KILN_DIR"
  require_free "$KILN_PORT" "$KILN_ADMIN_PORT"
  local ct=()
  if [ "${KILN_INPROCESS_CT:-0}" != 1 ]; then start_fake_ct_logs; ct=("${CT_LOG_FLAGS[@]}"); fi
  # Kiln's own default log level (info), as Pebble logs every request by default.
  env ${KILN_LOG:+RUST_LOG=$KILN_LOG} "$BIN/kiln" --data-dir "$KILN_DIR" --listen "127.0.0.1:$KILN_PORT" \
    --http01-port "$HTTP01_PORT" --tlsalpn01-port "$TLSALPN01_PORT" \
    --admin-listen "127.0.0.1:$KILN_ADMIN_PORT" "${ct[@]}" >"$WORK/kiln-embedded.log" 2>&1 &
  KILN_PID=$!; STARTED_PIDS+=("$KILN_PID")
  KILN_ADMIN_URL=http://127.0.0.1:$KILN_ADMIN_PORT
  wait_url "https://127.0.0.1:$KILN_PORT/directory" "$KILN_DIR/root.pem"
  say "kiln embedded pid $KILN_PID on 127.0.0.1:$KILN_PORT"
}

# The database counters on an admin port: "reads writes commits".
db_counts() { # admin-url
  curl -fsS "$1/metrics" 2>/dev/null | awk '
    /^kiln_db_statements_total\{kind="read"\}/ {r=$2}
    /^kiln_db_statements_total\{kind="write"\}/ {w=$2}
    /^kiln_db_commits_total / {c=$2}
    END {printf "%d %d %d\n", r, w, c}'
}

# A root and a localhost/127.0.0.1 certificate for Pebble's HTTPS API (the
# Debian package ships no test certificate), made once.
pebble_tls() {
  local d=$WORK/pebble-tls
  [ -s "$d/cert.pem" ] && return 0
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=kiln-bench pebble root" -keyout "$d/root.key" -out "$d/root.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$d/key.pem" -out "$d/cert.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$d/ext.cnf"
  openssl x509 -req -in "$d/cert.csr" -CA "$d/root.pem" -CAkey "$d/root.key" -CAcreateserial \
    -days 30 -extfile "$d/ext.cnf" -out "$d/cert.pem" 2>/dev/null
}

# Pebble + pebble-challtestsrv (its DNS answers 127.0.0.1 for every name).
# Sets PEBBLE_PID, CHALLTEST_PID, PEBBLE_ROOT.
start_pebble() {
  pebble_tls
  require_free "$PEBBLE_PORT" "$PEBBLE_MGMT_PORT" "$CHALLTEST_DNS_PORT" "$CHALLTEST_MGMT_PORT"
  PEBBLE_ROOT=$WORK/pebble-tls/root.pem
  cat >"$WORK/pebble-config.json" <<JSON
{"pebble": {
  "listenAddress": "127.0.0.1:$PEBBLE_PORT",
  "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT_PORT",
  "certificate": "$WORK/pebble-tls/cert.pem",
  "privateKey": "$WORK/pebble-tls/key.pem",
  "httpPort": $HTTP01_PORT,
  "tlsPort": $TLSALPN01_PORT,
  "ocspResponderURL": "",
  "externalAccountBindingRequired": false
}}
JSON
  pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 "127.0.0.1:$CHALLTEST_DNS_PORT" \
    -http01 "" -https01 "" -tlsalpn01 "" -management "127.0.0.1:$CHALLTEST_MGMT_PORT" \
    >"$WORK/challtestsrv.log" 2>&1 &
  CHALLTEST_PID=$!; STARTED_PIDS+=("$CHALLTEST_PID")
  PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 \
    pebble -config "$WORK/pebble-config.json" -dnsserver "127.0.0.1:$CHALLTEST_DNS_PORT" \
    >"$WORK/pebble.log" 2>&1 &
  PEBBLE_PID=$!; STARTED_PIDS+=("$PEBBLE_PID")
  wait_url "https://127.0.0.1:$PEBBLE_PORT/dir" "$PEBBLE_ROOT"
  say "pebble pid $PEBBLE_PID on 127.0.0.1:$PEBBLE_PORT (challtestsrv $CHALLTEST_PID)"
}

# Stops Pebble and its challtestsrv, then starts both afresh.
restart_pebble() {
  kill -TERM "$PEBBLE_PID" "$CHALLTEST_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$PEBBLE_PID" 2>/dev/null || kill -0 "$CHALLTEST_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$PEBBLE_PID" "$CHALLTEST_PID" 2>/dev/null || true
  local keep=() p
  for p in "${STARTED_PIDS[@]}"; do [ "$p" != "$PEBBLE_PID" ] && [ "$p" != "$CHALLTEST_PID" ] && keep+=("$p"); done
  STARTED_PIDS=("${keep[@]}")
  for _ in $(seq 1 50); do port_free "$PEBBLE_PORT" && port_free "$CHALLTEST_MGMT_PORT" && break; sleep 0.1; done
  start_pebble
}

# Pebble 2.4 (Debian) deadlocks under concurrent load (a lock-order problem
# in its in-memory store: bench/results/pebble-deadlock/). Each Pebble round
# runs on a fresh Pebble; a round that did not issue every order is kept as
# *.failed and run again, up to PEBBLE_ATTEMPTS times.
PEBBLE_ATTEMPTS=${PEBBLE_ATTEMPTS:-3}
pebble_round() { # out label kiln-bench-args...
  local out=$1 label=$2; shift 2
  local file=${label// /-} a
  for a in $(seq 1 "$PEBBLE_ATTEMPTS"); do
    restart_pebble
    bench_once "$out" "$label" "$PEBBLE_PID $CHALLTEST_PID" --root "$PEBBLE_ROOT" \
      --directory "https://127.0.0.1:$PEBBLE_PORT/dir" "$@"
    if python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r["failed"]==0 else 1)' \
        "$out/$file.json" 2>/dev/null; then
      return 0
    fi
    say "$label attempt $a did not issue every order (Pebble deadlock?); keeping it as $file.attempt$a.failed"
    echo "$label attempt $a failed" >>"$out/pebble-attempts.txt"
    mv "$out/$file.json" "$out/$file.attempt$a.failed" 2>/dev/null || true
    mv "$out/$file.txt" "$out/$file.attempt$a.txt" 2>/dev/null || true
  done
}

peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

machine_line() {
  printf '%s; %s cores; %s; kernel %s; load average %s' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" \
    "$(free -g | awk '/Mem:/ {print $2 " GiB"}')" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"; echo
}

# Distributed Kiln (deploy/local/cluster.sh, release binaries) on its own
# PostgreSQL database and queue prefix, so it never touches another run's.
# API_SOLE=1 runs its one api as [api] sole_replica.
CLUSTER_PORT=${CLUSTER_PORT:-24444}
CLUSTER_DB=${CLUSTER_DB:-kiln_bench}
CLUSTER_PREFIX=${CLUSTER_PREFIX:-kbench.}
CLUSTER_DIR=$WORK/cluster
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}

cluster_env() {
  export KILN_DATA_DIR=$CLUSTER_DIR KILN_LISTEN=127.0.0.1:$CLUSTER_PORT \
    KILN_HTTP01_PORT=$HTTP01_PORT KILN_TLSALPN01_PORT=$TLSALPN01_PORT \
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/$CLUSTER_DB KILN_QUEUE_PREFIX=$CLUSTER_PREFIX \
    KILN_ADMIN_PORT_BASE=${KILN_ADMIN_PORT_BASE:-24100} KILN_PROFILE=release KILN_NO_BUILD=1 \
    KILN_API_SOLE_REPLICA=${API_SOLE:-0}
}

delete_prefixed_queues() {
  local q
  for q in $(rabbitmqctl list_queues -q name 2>/dev/null | grep "^${CLUSTER_PREFIX//./\\.}" || true); do
    rabbitmqctl delete_queue "$q" >/dev/null 2>&1 || true
  done
}

# Fresh database, no leftover queues, then cluster.sh up. $1: replicas.
start_cluster() {
  local replicas=${1:-1}
  cluster_env
  export KILN_REPLICAS=$replicas
  [ -d "$CLUSTER_DIR/pids" ] && "$BENCH_ROOT/deploy/local/cluster.sh" down >/dev/null 2>&1 || true
  rm -rf "$CLUSTER_DIR"
  psql "$PG_ADMIN_URL" -qAtc "DROP DATABASE IF EXISTS $CLUSTER_DB" -c "CREATE DATABASE $CLUSTER_DB" >/dev/null
  delete_prefixed_queues
  require_free "$CLUSTER_PORT"
  "$BENCH_ROOT/deploy/local/cluster.sh" up >&2
  trap 'stop_cluster; stop_started' EXIT
}

stop_cluster() {
  cluster_env
  [ -d "$CLUSTER_DIR/pids" ] && "$BENCH_ROOT/deploy/local/cluster.sh" down >/dev/null 2>&1 || true
}

# "name pid peak-RSS-kB CPU-ms-since-start" for every cluster process.
cluster_rss() {
  echo "process pid VmHWM_kB cpu_ms_total"
  for f in "$CLUSTER_DIR"/pids/*.pid; do
    local n p; n=$(basename "$f" .pid); p=$(cat "$f")
    echo "$n $p $(peak_rss_kb "$p") $(cpu_ms "$p")"
  done
}

# CPU time (ms, user+system) a process has used so far.
cpu_ms() { awk -v t="$(getconf CLK_TCK)" '{printf "%d\n", ($14 + $15) * 1000 / t}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# Runs kiln-bench once and notes the CPU the server pid(s), the CT log
# pids (EXTRA_PIDS, reported apart) and the driver used per order, and,
# with ADMIN_URL set, the database statements and commits per order.
# bench_once OUT_DIR TARGET_LABEL "SERVER_PIDS" kiln-bench-args...
bench_once() {
  local out=$1 label=$2 pids=$3; shift 3
  local file=${label// /-}
  local before=0 after=0 ct_before=0 ct_after=0 p db_before="0 0 0" db_after="0 0 0"
  for p in $pids; do before=$((before + $(cpu_ms "$p"))); done
  for p in ${EXTRA_PIDS:-}; do ct_before=$((ct_before + $(cpu_ms "$p"))); done
  [ -n "${ADMIN_URL:-}" ] && db_before=$(db_counts "$ADMIN_URL")
  /usr/bin/time -o "$out/$file.time" -f '%e %U %S %M' \
    "$BIN/kiln-bench" "$@" --json --label "$label" >"$out/$file.json" 2>"$out/$file.txt" \
    || say "$label failed (see $out/$file.txt)"
  for p in $pids; do after=$((after + $(cpu_ms "$p"))); done
  for p in ${EXTRA_PIDS:-}; do ct_after=$((ct_after + $(cpu_ms "$p"))); done
  [ -n "${ADMIN_URL:-}" ] && db_after=$(db_counts "$ADMIN_URL")
  cat "$out/$file.txt" >&2
  python3 - "$out/$file.json" "$out/$file.time" $((after - before)) "$label" \
    $((ct_after - ct_before)) "${EXTRA_PIDS:+yes}" "$db_before" "$db_after" >>"$out/cpu.txt" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception:
    sys.exit(0)
wall, user, sys_, rss = open(sys.argv[2]).read().split()[-4:]
n = max(r['orders'] + r['warmup'], 1)  # orders attempted
server = int(sys.argv[3])
driver = (float(user) + float(sys_)) * 1000
line = (f"{sys.argv[4]}: server CPU {server / n:.2f} ms/order, driver CPU {driver / n:.2f} ms/order "
        f"(incl. warm-up and account setup), driver peak RSS {int(rss)//1024} MB")
if sys.argv[6]:
    line += f"; CT logs (own processes) {int(sys.argv[5]) / n:.2f} ms/order"
b, a = [list(map(int, x.split())) for x in (sys.argv[7], sys.argv[8])]
if any(a):
    reads, writes, commits = (y - x for x, y in zip(b, a))
    line += (f"; database per order: {reads / n:.1f} reads, {writes / n:.1f} writes, "
             f"{commits / n:.1f} commits")
print(line)
PY
}
