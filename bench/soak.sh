#!/usr/bin/env bash
# Soak (issue 16): ORDERS orders through Kiln distributed (RabbitMQ quorum
# queues + PostgreSQL, REPLICAS of each worker), sampling every
# SAMPLE_SECONDS each process's resident memory and the database's size,
# then `kiln audit` over everything issued. A benchmark, not a test: it
# reports, and exits non-zero only when the audit finds a violation or an
# order was not issued.
#
#   ORDERS=20000 C=32 REPLICAS=2 SAMPLE_SECONDS=10 bench/soak.sh
#
# Writes bench/results/soak-<time>/: rss.csv (seconds, process, VmRSS kB),
# db.csv (seconds, orders issued so far, database bytes), load.json and
# load.txt (kiln-bench), audit.json, summary.md.
source "$(dirname "$0")/lib.sh"
ORDERS=${ORDERS:-20000}; C=${C:-32}; REPLICAS=${REPLICAS:-2}; SAMPLE_SECONDS=${SAMPLE_SECONDS:-10}
POLL_MS=${POLL_MS:-50}
out=$RESULTS/soak-$(date -u +%Y%m%dT%H%M%SZ); mkdir -p "$out"
machine_line >"$out/machine.txt"
echo "ORDERS=$ORDERS C=$C REPLICAS=$REPLICAS SAMPLE_SECONDS=$SAMPLE_SECONDS POLL_MS=$POLL_MS bench/soak.sh" >"$out/command.txt"

start_cluster "$REPLICAS"
db_url=postgres://postgres@127.0.0.1:5432/$CLUSTER_DB
issued_so_far() { psql "$db_url" -qAtc "SELECT count(*) FROM orders WHERE status = 'valid'" 2>/dev/null || echo 0; }
db_bytes() { psql "$db_url" -qAtc "SELECT pg_database_size(current_database())" 2>/dev/null || echo 0; }

sample() { # seconds-since-start
  local f
  for f in "$CLUSTER_DIR"/pids/*.pid; do
    # A process that died (a zombie) has no VmRSS: 0, not an empty field.
    local kb; kb=$(rss_kb "$(cat "$f")")
    echo "$1,$(basename "$f" .pid),${kb:-0}" >>"$out/rss.csv"
  done
  echo "$1,$(issued_so_far),$(db_bytes)" >>"$out/db.csv"
}
echo "seconds,process,rss_kb" >"$out/rss.csv"
echo "seconds,orders_valid,database_bytes" >"$out/db.csv"

say "soak: $ORDERS orders at C=$C through $REPLICAS replica(s) of each worker"
start=$(date +%s)
sample 0
"$BIN/kiln-bench" --directory "https://127.0.0.1:$CLUSTER_PORT/directory" --root "$CLUSTER_DIR/root.pem" \
  -n "$ORDERS" -c "$C" --warmup 0 --poll-interval "$POLL_MS" --http01-listen "127.0.0.1:$HTTP01_PORT" \
  --order-timeout-s 300 --run-timeout-s 86400 --json --label soak >"$out/load.json" 2>"$out/load.txt" &
load_pid=$!
while kill -0 "$load_pid" 2>/dev/null; do
  sleep "$SAMPLE_SECONDS"
  sample $(( $(date +%s) - start ))
done
load_rc=0; wait "$load_pid" || load_rc=$?
sample $(( $(date +%s) - start ))

say "auditing"
audit_rc=0
env -u KILN_DATA_DIR "$BIN/kiln" audit --json --database-url "$db_url" \
  --ct-config "$CLUSTER_DIR/config/ct-submitter.toml" \
  --signer-config "$CLUSTER_DIR/config/signer.toml" >"$out/audit.json" 2>"$out/audit.log" || audit_rc=$?

python3 - "$out" "$load_rc" "$audit_rc" <<'PY' | tee "$out/summary.md"
import csv, json, sys, collections
out, load_rc, audit_rc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
load = json.load(open(f"{out}/load.json")) if load_rc == 0 else {}
rss = collections.defaultdict(list)
for row in csv.DictReader(open(f"{out}/rss.csv")):
    rss[row["process"]].append((int(row["seconds"]), int(row["rss_kb"])))
db = [(int(r["seconds"]), int(r["orders_valid"]), int(r["database_bytes"]))
      for r in csv.DictReader(open(f"{out}/db.csv"))]
print(f"# Soak: {open(f'{out}/command.txt').read().strip()}\n")
if load:
    print(f"orders: {load['orders']} attempted, {load['ok']} issued, {load['failed']} failed; "
          f"{load['orders_per_s']:.1f} orders/s over {load['wall_s']:.0f} s\n")
else:
    print(f"kiln-bench exited {load_rc} (see load.txt)\n")
print("| process | RSS first sample (MB) | RSS at mid-run (MB) | RSS last sample (MB) | peak sampled (MB) |")
print("|---|---:|---:|---:|---:|")
for name, points in sorted(rss.items()):
    kb = [k for _, k in points]
    print(f"| {name} | {kb[0]/1024:.1f} | {kb[len(kb)//2]/1024:.1f} | {kb[-1]/1024:.1f} | {max(kb)/1024:.1f} |")
if len(db) >= 2 and db[-1][1] > db[0][1]:
    grown = db[-1][2] - db[0][2]
    issued = db[-1][1] - db[0][1]
    print(f"\ndatabase: {db[0][2]/2**20:.1f} → {db[-1][2]/2**20:.1f} MiB over {issued} issued orders: "
          f"**{grown/issued/1024:.1f} KiB per order**")
try:
    audit = json.load(open(f"{out}/audit.json"))
    print(f"\naudit (exit {audit_rc}): **{audit['violations']} violation(s)**\n")
    print("| # | check | checked | violations | status |\n|---:|---|---:|---:|---|")
    for c in audit["checks"]:
        print(f"| {c['id']} | {c['name']} | {c['checked']} | {c['violation_count']} | {c['status']} |")
    for c in audit["checks"]:
        for v in c["violations"][:5]:
            print(f"- {json.dumps(v)[:300]}")
except Exception as e:
    print(f"\naudit exit {audit_rc}, no JSON ({e}); see audit.log")
PY
say "results in $out"
[ "$load_rc" = 0 ] && [ "$audit_rc" = 0 ]
