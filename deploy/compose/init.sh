#!/usr/bin/env bash
# The compose `init` service: everything the long-running services need,
# done once before they start, and safe to run again on every `up`.
#
#   1. the CA and the api's HTTPS certificate   (kiln init; keeps an existing CA)
#   2. the database schema                      (kiln migrate)
#   3. a key per fake CT log, and their public keys
#   4. the ct-submitter config: the template with those keys filled in
#
# Runs as root only to hand the volumes to uid 10001 at the end.
# Variables (defaults are the paths in deploy/compose.yaml):
#   KILN_DATA          shared public volume     (/data; the signer's CA files in $KILN_DATA/ca)
#   KILN_ROOT_DIR      the root's key and cert  (/root-ca: a volume only init mounts)
#   KILN_CONFIG_SRC    deploy/config, mounted   (/etc/kiln)
#   KILN_API_NAMES     names/IPs on the api's HTTPS certificate
#   KILN_CT_LOGS       number of fake CT logs   (3)
#   DATABASE_URL_FILE  file with the PostgreSQL URL (/run/secrets/database-url)
#   KILN_UID           owner of the results     (10001; empty: leave as is)
set -euo pipefail

data=${KILN_DATA:-/data}
src=${KILN_CONFIG_SRC:-/etc/kiln}
api_names=${KILN_API_NAMES:-localhost,127.0.0.1,::1,api}
logs=${KILN_CT_LOGS:-3}
db_file=${DATABASE_URL_FILE:-/run/secrets/database-url}
uid=${KILN_UID-10001}
root_dir=${KILN_ROOT_DIR:-/root-ca}

mkdir -p "$data/ct" "$data/config" "$data/ca"

# The root (and its key) in its own volume, the intermediate for the signer
# in $data/ca: the signer's volume never holds the root's key.
kiln init --dir "$data" --root-dir "$root_dir" --api-names "$api_names"

# The URL goes through the environment, not argv, so `ps` never shows it.
# A few tries: the database may have only just become ready.
for attempt in 1 2 3 4 5; do
  DATABASE_URL=$(<"$db_file") kiln migrate && break
  [ "$attempt" = 5 ] && { echo "init: kiln migrate failed" >&2; exit 1; }
  sleep 3
done

# A fake CT log creates its key file if missing (written and closed before
# it prints anything) and prints its public key (base64 SPKI) on stdout;
# start each once on loopback, read the key, stop it. SIGTERM, not SIGINT:
# a background job of a script starts with SIGINT ignored, and the log only
# installs its SIGINT handler once it serves.
pid=""
trap '[ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true' EXIT
config=$(<"$src/ct-submitter.toml")
for ((i = 0; i < logs; i++)); do
  out=$data/ct/log-$i.out
  : >"$out"
  fake-ct-log --listen 127.0.0.1:0 --key "$data/ct/log-$i.pem" >"$out" 2>/dev/null &
  pid=$!
  key=""
  for _ in $(seq 1 100); do
    key=$(sed -n 's/^public_key=//p' "$out" 2>/dev/null || true)
    [ -n "$key" ] && break
    sleep 0.1
  done
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
  [ -n "$key" ] || { echo "init: fake CT log $i printed no public key" >&2; exit 1; }
  printf '%s\n' "$key" >"$data/ct/log-$i.pub"
  rm -f "$out"
  config=${config//"@CT_LOG_${i}_PUBLIC_KEY@"/"$key"}
  echo "init: CT log $i public key $key"
done
if grep -q '@CT_LOG_[0-9]*_PUBLIC_KEY@' <<<"$config"; then
  echo "init: $src/ct-submitter.toml names more CT logs than KILN_CT_LOGS=$logs" >&2
  exit 1
fi
printf '%s\n' "$config" >"$data/config/ct-submitter.toml.tmp"
ct-submitter --config "$data/config/ct-submitter.toml.tmp" --check-config
mv "$data/config/ct-submitter.toml.tmp" "$data/config/ct-submitter.toml"

if [ -n "$uid" ]; then
  chown -R "$uid:$uid" "$data" "$data/ca"
  chmod 0700 "$data/ca" "$root_dir"
fi
echo "init: done"
