#!/usr/bin/env bash
# Runs Kiln distributed on this machine, without containers: every binary as
# its own process against the local RabbitMQ and PostgreSQL.
#
#   deploy/local/cluster.sh up     build, start everything, wait for the directory
#   deploy/local/cluster.sh down   stop everything (SIGTERM, then SIGKILL)
#
# Environment (same meanings and defaults as the `kiln` flags):
#   KILN_REPLICAS        replicas of each worker (default 2)
#   KILN_PERSPECTIVES    remote validation perspectives (MPIC), one validator
#                        process each, named remote-1… (default 0)
#   KILN_PERSPECTIVE_DNS_SERVERS  space-separated resolvers, the i-th for
#                        remote-i (default: KILN_DNS_SERVER's, as the primary)
#   KILN_DATA_DIR        CA, configs, logs, pids (default ./kiln-cluster)
#   KILN_LISTEN          the api's HTTPS address (default 127.0.0.1:14443)
#   KILN_PUBLIC_HTTP_LISTEN  the api's plain-HTTP address for relying parties:
#                        the issuer certificate and the CRLs every leaf names
#                        (default 127.0.0.1:14080)
#   KILN_CRL_PUBLISH_WITHIN_SECS  a revocation is on the served CRL within
#                        this (default 60)
#   KILN_DNS_SERVER      where validator and caa-checker send every lookup
#                        (default: a fake-dns on loopback, every name 127.0.0.1)
#   KILN_HTTP01_PORT     default 5002;  KILN_TLSALPN01_PORT  default 5001
#   DATABASE_URL         default postgres://postgres@127.0.0.1:5432/test
#   AMQP_URL             default amqp://guest:guest@127.0.0.1:5672/%2f
#   KILN_QUEUE_PREFIX    prefix for queue/exchange names (isolates runs)
#   KILN_ADMIN_PORT_BASE first admin port (default 19100; one per process)
#   KILN_DB_CONNECTIONS  PostgreSQL connections for the whole cluster, shared
#                        out per process (default 80 of the server's usual 100)
#   KILN_CT_LATENCY_MS   added to every answer of the fake CT logs (default 0)
#   KILN_PROFILE         debug (default) or release
#   KILN_NO_BUILD=1      use the binaries already built
#   KILN_CAA_RECHECK_AFTER_SECS  caa-checker's recheck_after_secs (default 7 h)
#   KILN_API_SOLE_REPLICA=1  run the one api as [api] sole_replica (nonces and
#                        accounts in memory, a second api replica locked out)
#   KILN_API_RATE_LIMITS the body of the api's [api.rate_limits] table, e.g.
#                        "new_accounts_per_ip_per_3h = 3" (default: empty, no
#                        limits; the api's own default is Let's Encrypt's)
#   OTEL_*               passed through to every process, like the rest of the
#                        environment (e.g. OTEL_EXPORTER_OTLP_ENDPOINT)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
data=${KILN_DATA_DIR:-$PWD/kiln-cluster}
replicas=${KILN_REPLICAS:-2}
perspectives=${KILN_PERSPECTIVES:-0}
listen=${KILN_LISTEN:-127.0.0.1:14443}
public_http=${KILN_PUBLIC_HTTP_LISTEN:-127.0.0.1:14080}
dns_server=${KILN_DNS_SERVER:-}
http01=${KILN_HTTP01_PORT:-5002}
tlsalpn01=${KILN_TLSALPN01_PORT:-5001}
database_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
amqp_url=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
prefix=${KILN_QUEUE_PREFIX:-}
admin_port=${KILN_ADMIN_PORT_BASE:-19100}
profile=${KILN_PROFILE:-debug}
workers=(validator caa-checker signer ct-submitter)
# Each process has its own pool; together they must fit the server's limit.
db_pool=$(( ${KILN_DB_CONNECTIONS:-80} / (1 + ${#workers[@]} * replicas) ))
[ "$db_pool" -ge 2 ] || db_pool=2

mkdir -p "$data"
data=$(cd "$data" && pwd)
bin=$root/target/$profile
[ "$profile" = debug ] || [ "$profile" = release ] || { echo "KILN_PROFILE must be debug or release" >&2; exit 2; }

say() { printf '%s\n' "$*" >&2; }

start() { # name config-file admin-port
  local name=$1 binary=$2 config=$3 port=$4
  KILN_ADMIN__LISTEN=127.0.0.1:$port RUST_LOG=${RUST_LOG:-info} \
    setsid "$bin/$binary" --config "$config" >"$data/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$data/pids/$name.pid"
  echo "$name 127.0.0.1:$port" >>"$data/admin-ports"
}

common_config() { # binary
  cat <<TOML
[database]
url = "$database_url"
max_connections = $db_pool

[broker]
url = "$amqp_url"
prefix = "$prefix"

[acme]
base_url = "https://$listen"
public_base_url = "http://$public_http"
TOML
}

up() {
  if [ "${KILN_NO_BUILD:-0}" != 1 ]; then
    say "building ($profile)…"
    local flags=()
    [ "$profile" = release ] && flags+=(--release)
    (cd "$root" && cargo build -q "${flags[@]}" -p kiln -p api -p validator -p caa-checker \
      -p signer -p ct-submitter -p fake-ct-log -p fake-dns)
  fi
  if ls "$data"/pids/*.pid >/dev/null 2>&1; then
    say "already running (pids in $data/pids); run '$0 down' first"
    exit 1
  fi
  mkdir -p "$data/config" "$data/logs" "$data/pids" "$data/ct"
  : >"$data/admin-ports"

  "$bin/kiln" init --dir "$data" >/dev/null
  "$bin/kiln" migrate --database-url "$database_url" >/dev/null

  # Three fake CT logs, three operators. Each prints its URL and key.
  local logs_toml=""
  for i in 0 1 2; do
    local out=$data/ct/log-$i.out
    setsid "$bin/fake-ct-log" --listen 127.0.0.1:0 --key "$data/ct/log-$i.pem" \
      --latency-ms "${KILN_CT_LATENCY_MS:-0}" >"$out" 2>"$data/logs/ct-log-$i.log" </dev/null &
    echo $! >"$data/pids/ct-log-$i.pid"
    for _ in $(seq 1 100); do grep -q '^public_key=' "$out" 2>/dev/null && break; sleep 0.1; done
    local url key
    url=$(grep -m1 '^http' "$out")
    key=$(grep -m1 '^public_key=' "$out" | cut -d= -f2-)
    [ -n "$url" ] && [ -n "$key" ] || { say "fake CT log $i did not start"; exit 1; }
    logs_toml+=$'\n'"[[ct-submitter.logs]]"$'\n'"name = \"fake-log-$i\""$'\n'"url = \"$url\""$'\n'"public_key = \"$key\""$'\n'"operator = \"Fake Operator $i\""$'\n'
  done

  # The validator and caa-checker always ask a DNS server (they never make
  # answers up): without KILN_DNS_SERVER, a fake one on loopback where every
  # name is 127.0.0.1 with no TXT or CAA records, as in the all-in-one.
  if [ -z "$dns_server" ]; then
    local dns_out=$data/dns.out
    setsid "$bin/fake-dns" >"$dns_out" 2>"$data/logs/fake-dns.log" </dev/null &
    echo $! >"$data/pids/fake-dns.pid"
    for _ in $(seq 1 100); do grep -q ':' "$dns_out" 2>/dev/null && break; sleep 0.1; done
    dns_server=$(head -1 "$dns_out")
    [ -n "$dns_server" ] || { say "fake DNS server did not start"; exit 1; }
  fi
  local dns_line="dns_server = \"$dns_server\""
  { common_config; cat <<TOML

[api]
listen = "$listen"
tls_chain = "$data/api-tls-chain.pem"
tls_key = "$data/api-tls-key.pem"
root_pem = "$data/root.pem"
public_http_listen = "$public_http"
# The tests and local clients ask for *.test names (RFC 6761).
allowed_special_use_domains = ["test"]
# The validators may reach loopback here, so 127.0.0.1 and ::1 may be certified.
allow_loopback_ip_identifiers = true
TOML
    if [ "${KILN_API_SOLE_REPLICA:-0}" = 1 ]; then echo "sole_replica = true"; fi
    # A cluster on one machine serves tests and benchmarks from one address
    # and one registered domain: no rate limits unless asked.
    printf '\n[api.rate_limits]\n%s\n' "${KILN_API_RATE_LIMITS:-}"
  } >"$data/config/api.toml"
  # The challenge servers (certbot, lego, the tests' responders) are on this
  # machine: loopback is allowed as well as public addresses.
  # The [validator] section with the resolver line given.
  validator_section() {
    printf '\n[validator]\n%s\nhttp01_port = %s\ntlsalpn01_port = %s\nallow_non_public = ["127.0.0.0/8", "::1/128"]\n' "$1" "$http01" "$tlsalpn01"
  }
  # Remote perspectives (MPIC): one validator each, with its own queue; on
  # one machine they share the resolver, so this is a test deployment.
  local remotes=""
  for i in $(seq 1 "$perspectives"); do remotes+="${remotes:+, }\"remote-$i\""; done
  { common_config; validator_section "$dns_line"
    printf '\n[validator.mpic]\nremotes = [%s]\ntest_deployment = true\n' "$remotes"; } >"$data/config/validator.toml"
  local own_dns=(${KILN_PERSPECTIVE_DNS_SERVERS:-})
  for i in $(seq 1 "$perspectives"); do
    local line=$dns_line
    [ -n "${own_dns[$((i - 1))]:-}" ] && line="dns_server = \"${own_dns[$((i - 1))]}\""
    { common_config; validator_section "$line"; printf 'perspective = "remote-%s"\n' "$i"; } \
      >"$data/config/perspective-$i.toml"
  done
  local recheck_line=""
  [ -n "${KILN_CAA_RECHECK_AFTER_SECS:-}" ] && recheck_line="recheck_after_secs = $KILN_CAA_RECHECK_AFTER_SECS"
  { common_config; printf '\n[caa-checker]\n%s\n%s\n' "$dns_line" "$recheck_line"
    printf '\n[caa-checker.mpic]\nremotes = [%s]\ntest_deployment = true\n' "$remotes"; } >"$data/config/caa-checker.toml"
  { common_config; printf '\n[signer]\nca_dir = "%s/ca"\n\n[signer.crl]\npublish_within_secs = %s\n' \
      "$data" "${KILN_CRL_PUBLISH_WITHIN_SECS:-60}"; } >"$data/config/signer.toml"
  { common_config; printf '\n[ct-submitter]\n%s' "$logs_toml"; } >"$data/config/ct-submitter.toml"

  for b in api "${workers[@]}"; do
    "$bin/$b" --config "$data/config/$b.toml" --check-config >/dev/null
  done

  start api api "$data/config/api.toml" "$admin_port"
  local port=$admin_port
  for w in "${workers[@]}"; do
    for r in $(seq 1 "$replicas"); do
      port=$((port + 1))
      start "$w-$r" "$w" "$data/config/$w.toml" "$port"
    done
  done
  for i in $(seq 1 "$perspectives"); do
    port=$((port + 1))
    start "perspective-$i" validator "$data/config/perspective-$i.toml" "$port"
  done

  for _ in $(seq 1 120); do
    if curl -fsS --cacert "$data/root.pem" "https://$listen/directory" >/dev/null 2>&1; then
      echo "Kiln (distributed, $replicas replicas per worker) is running."
      echo "  ACME directory: https://$listen/directory"
      echo "  Root certificate: $data/root.pem"
      echo "  Issuer and CRLs (plain HTTP): http://$public_http/ca/intermediate.der, http://$public_http/crl/"
      echo "  Logs: $data/logs   Admin ports: $data/admin-ports"
      return 0
    fi
    sleep 0.5
  done
  say "the directory did not answer; see $data/logs"
  down
  exit 1
}

down() {
  shopt -s nullglob
  local pids=()
  for f in "$data"/pids/*.pid; do pids+=("$(cat "$f")"); done
  [ ${#pids[@]} -eq 0 ] && { say "nothing running"; return 0; }
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 150); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  rm -f "$data"/pids/*.pid
  say "stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
