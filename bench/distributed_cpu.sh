#!/usr/bin/env bash
# Where a distributed order's CPU goes, every process on the machine: the
# cluster's own (api, workers, fake CT logs) and the servers behind it (all
# PostgreSQL backends, RabbitMQ's beam.smp), from /proc/<pid>/stat before
# and after one load; with PERF=1 also `perf record -a` for 5 s of it. Where
# PostgreSQL has pg_stat_statements loaded (shared_preload_libraries), also
# the statements the load ran, with calls per order (pg-statements.txt).
# With PROFILE_PROCESS=api (or validator-1, signer-1, …: a name under the
# cluster's pids/), also a dwarf-unwound `perf record` of that one process
# and where its CPU goes per order (profile-<name>.md, as bench/profile.sh).
#
#   N=1000 C=64 POLL_MS=10 WARMUP=120 bench/distributed_cpu.sh
source "$(dirname "$0")/lib.sh"
N=${N:-1000}; C=${C:-64}; POLL_MS=${POLL_MS:-10}; WARMUP=${WARMUP:-120}
out=$RESULTS/distributed-cpu-$(date -u +%Y%m%dT%H%M%SZ); mkdir -p "$out"
machine_line >"$out/machine.txt"
echo "API_SOLE=${API_SOLE:-0} N=$N C=$C POLL_MS=$POLL_MS WARMUP=$WARMUP PERF=${PERF:-0} PROFILE_PROCESS=${PROFILE_PROCESS:-} bench/distributed_cpu.sh" >"$out/command.txt"

start_cluster 1
processes() {
  for f in "$CLUSTER_DIR"/pids/*.pid; do echo "$(basename "$f" .pid) $(cat "$f")"; done
  echo "postgres $(pgrep -d, -x postgres)"
  echo "rabbitmq $(pgrep -d, beam.smp)"
}
snapshot() { # "name cpu_ms" per process group
  processes | while read -r name pids; do
    local total=0 p
    for p in ${pids//,/ }; do total=$((total + $(cpu_ms "$p"))); done
    echo "$name $total"
  done
}
load() { # orders warm-up
  "$BIN/kiln-bench" --directory "https://127.0.0.1:$CLUSTER_PORT/directory" --root "$CLUSTER_DIR/root.pem" \
    -n "$1" -c "$C" --warmup "$2" --poll-interval "$POLL_MS" --http01-listen "127.0.0.1:$HTTP01_PORT" \
    --order-timeout-s 120 --run-timeout-s 900
}
load 100 "$WARMUP" >/dev/null 2>&1
snapshot >"$out/cpu-before.txt"
pg_db_url=postgres://postgres@127.0.0.1:5432/$CLUSTER_DB
pg_statements=$(psql "$pg_db_url" -qAtc "SHOW shared_preload_libraries" 2>/dev/null | grep -c pg_stat_statements || true)
if [ "$pg_statements" = 1 ]; then
  psql "$pg_db_url" -qAtc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
fi
load "$N" 0 >"$out/load.txt" 2>&1 &
loader=$!; STARTED_PIDS+=("$loader")
if [ "${PERF:-0}" = 1 ]; then
  sleep 3
  perf record -e cpu-clock -F 99 -a -g -o "$WORK/dist.perf.data" -- sleep 5 >/dev/null 2>&1
  perf report -i "$WORK/dist.perf.data" --no-children --stdio --sort comm -g none 2>/dev/null \
    | grep -v '^#' | sed '/^$/d' | head -20 >"$out/perf-by-comm.txt"
fi
if [ -n "${PROFILE_PROCESS:-}" ]; then
  sleep 3
  perf record -e cpu-clock -F 199 --call-graph dwarf,16384 -p "$(cat "$CLUSTER_DIR/pids/$PROFILE_PROCESS.pid")" \
    -o "$WORK/process.perf.data" -- sleep 8 >/dev/null 2>&1
fi
wait "$loader" || true
snapshot >"$out/cpu-after.txt"
if [ "$pg_statements" = 1 ]; then
  psql "$pg_db_url" -qc "SELECT round(calls::numeric / $N, 2) AS per_order, round(mean_exec_time::numeric, 3) AS mean_ms,
      left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS statement
    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY calls DESC LIMIT 40" >"$out/pg-statements.txt"
  psql "$pg_db_url" -qAtc "SELECT 'statements per order: ' || round(sum(calls)::numeric / $N, 1) FROM pg_stat_statements
    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())" >>"$out/pg-statements.txt"
fi
{
  cat "$out/load.txt" | sed -n 2p
  echo
  echo "| process | CPU ms per order |"
  echo "|---|---:|"
  join "$out/cpu-before.txt" "$out/cpu-after.txt" |
    awk -v n="$N" '{ d = ($3 - $2) / n; t += d; printf "| %s | %.2f |\n", $1, d } END { printf "| **total** | **%.2f** |\n", t }'
} | tee "$out/summary.md"
if [ -n "${PROFILE_PROCESS:-}" ]; then
  per_order=$(join "$out/cpu-before.txt" "$out/cpu-after.txt" |
    awk -v n="$N" -v p="$PROFILE_PROCESS" '$1 == p { printf "%.2f", ($3 - $2) / n }')
  perf script -i "$WORK/process.perf.data" -F comm,ip,sym >"$WORK/process.script.txt" 2>/dev/null
  { echo "**where $PROFILE_PROCESS's CPU goes, per order** ($per_order ms per order over the load)"; echo
    python3 "$BENCH_ROOT/bench/perf_per_order.py" "$WORK/process.script.txt" "$per_order"
  } | tee "$out/profile-$PROFILE_PROCESS.md"
  rm -f "$WORK/process.script.txt"
fi
say "results in $out"
