#!/usr/bin/env bash
# Regenerates docs/COMPATIBILITY.md: `kiln conformance` (README "Client
# conformance") for every ACME client installed on this machine, with the
# command used for each. Clients not installed are listed as such, not run.
#
#   scripts/compat-matrix.sh                  # every known client
#   CLIENTS="certbot lego" scripts/compat-matrix.sh
#   SCENARIOS=baseline,processing-polls scripts/compat-matrix.sh
#
# Debian: apt-get install lego dehydrated uacme acme-tiny lacme acmetool;
# PyPI: certbot.
# Everything runs on loopback; a full run takes a few minutes per client.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-"certbot lego instant-acme dehydrated uacme acme-tiny lacme acmetool"}
TIMEOUT=${TIMEOUT:-90s}
OUT=${OUT:-docs/COMPATIBILITY.md}

cargo build -q -p kiln --bin kiln
cargo build -q -p kiln-tests --bin conformance-instant-acme
KILN=$PWD/target/debug/kiln
INSTANT=$PWD/target/debug/conformance-instant-acme
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

# Clients that only write challenge files get a web server for them: the
# shell snippets below take the placeholders as $1..$6 (directory, root,
# domain, http-01 port, email, workdir).
SERVE='mkdir -p "$6/www/.well-known/acme-challenge"
python3 -m http.server "$4" --bind 127.0.0.1 --directory "$6/www" >/dev/null 2>&1 &
sleep 1'
ARGS=(client '{directory}' '{root}' '{domain}' '{http01_port}' '{email}' '{workdir}')

# Sets `cmd` (the client command, with placeholders) and `version`; a
# client run through a shell snippet also sets `script`, shown apart.
client_certbot() {
  command -v certbot >/dev/null || return 1
  version=$(certbot --version 2>&1 | head -1)
  cmd=(env 'REQUESTS_CA_BUNDLE={root}' 'XDG_CONFIG_HOME={workdir}' certbot certonly
    --non-interactive --agree-tos -m '{email}' --no-eff-email --server '{directory}'
    --config-dir '{workdir}/config' --work-dir '{workdir}/work' --logs-dir '{workdir}/logs'
    --standalone --preferred-challenges http --http-01-port '{http01_port}'
    --http-01-address 127.0.0.1 -d '{domain}')
}
client_lego() {
  command -v lego >/dev/null || return 1
  version="lego $(dpkg-query -W -f '${Version}' lego 2>/dev/null || lego --version)"
  cmd=(env 'LEGO_CA_CERTIFICATES={root}' lego --server '{directory}' --accept-tos
    --email '{email}' --http --http.port '127.0.0.1:{http01_port}' --domains '{domain}'
    --path '{workdir}' run)
}
client_instant-acme() {
  [ -x "$INSTANT" ] || return 1
  version="instant-acme $(awk '/^name = "instant-acme"/{getline; print $3}' Cargo.lock | tr -d '"')"
  version="$version (tests/bin/conformance_instant_acme.rs, default RetryPolicy, ARI renewal)"
  cmd=("$INSTANT" --directory '{directory}' --root '{root}' --domain '{domain}'
    --http01-port '{http01_port}' --email '{email}' --out '{workdir}/cert.pem' --ari)
}
client_dehydrated() {
  command -v dehydrated >/dev/null || return 1
  version="dehydrated $(dpkg-query -W -f '${Version}' dehydrated 2>/dev/null || echo '?')"
  script="$SERVE"'
cat > "$6/config" <<EOF
CA="$1"
BASEDIR="$6"
WELLKNOWN="$6/www/.well-known/acme-challenge"
CONTACT_EMAIL="$5"
EOF
export CURL_CA_BUNDLE="$2"
dehydrated -f "$6/config" --register --accept-terms && dehydrated -f "$6/config" -c -d "$3"'
  cmd=(sh -c "$script" "${ARGS[@]}")
}
client_uacme() {
  command -v uacme >/dev/null || return 1
  version="uacme $(dpkg-query -W -f '${Version}' uacme 2>/dev/null || echo '?')"
  # uacme's libcurl trusts only the system bundle: in a private mount
  # namespace, Kiln's root stands in for it.
  script="$SERVE"'
mount --bind "$2" /etc/ssl/certs/ca-certificates.crt || exit 97
export UACME_CHALLENGE_PATH="$6/www/.well-known/acme-challenge"
{ [ -e "$6/registered" ] || { uacme -v -y -c "$6/conf" -a "$1" new "$5" && touch "$6/registered"; }; } &&
uacme -v -c "$6/conf" -a "$1" -h /usr/share/uacme/uacme.sh issue "$3"'
  cmd=(unshare --mount --propagation private sh -c "$script" "${ARGS[@]}")
}
client_acme-tiny() {
  command -v acme-tiny >/dev/null || return 1
  version="acme-tiny $(dpkg-query -W -f '${Version}' acme-tiny 2>/dev/null || echo '?')"
  script="$SERVE"'
cd "$6" && openssl genrsa -out account.key 2048 2>/dev/null &&
openssl req -new -newkey rsa:2048 -nodes -keyout domain.key -subj / \
  -addext "subjectAltName=DNS:$3" -out domain.csr 2>/dev/null &&
SSL_CERT_FILE="$2" acme-tiny --account-key account.key --csr domain.csr \
  --acme-dir "$6/www/.well-known/acme-challenge" --disable-check \
  --directory-url "$1" --contact "mailto:$5" > chain.pem'
  cmd=(sh -c "$script" "${ARGS[@]}")
}

client_lacme() {
  command -v lacme >/dev/null || return 1
  version="lacme $(dpkg-query -W -f '${Version}' lacme 2>/dev/null || echo '?')"
  # lacme starts its ACME client with a cleaned environment and takes no CA
  # file for the server: its client command names one through env(1).
  # No privilege drop (its users need not exist); an RSA account key, the
  # only kind its accountd signs with; its own http-01 server on the port.
  script='cd "$6" && umask 077 && mkdir -p run &&
{ [ -e account.key ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out account.key 2>/dev/null; } &&
{ [ -e domain.key ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out domain.key 2>/dev/null; } || exit 97
cat > lacme.conf <<EOF
config-certs = $6/certs.conf
[client]
socket = $6/run/S.lacme
command = /usr/bin/env PERL_LWP_SSL_CA_FILE=$2 /usr/libexec/lacme/client
user =
group =
server = $1
[webserver]
listen = 127.0.0.1:$4
user =
group =
[accountd]
command = /usr/bin/lacme-accountd --privkey=file:$6/account.key
EOF
cat > certs.conf <<EOF
[$3]
certificate-chain = $6/chain.pem
certificate-key = $6/domain.key
subject = /CN=$3
subjectAltName = DNS:$3
CAfile = $2
EOF
lacme --config="$6/lacme.conf" account --register --tos-agreed "mailto:$5" &&
lacme --config="$6/lacme.conf" newOrder'
  cmd=(sh -c "$script" "${ARGS[@]}")
}
client_acmetool() {
  command -v acmetool >/dev/null || return 1
  version="acmetool $(dpkg-query -W -f '${Version}' acmetool 2>/dev/null || echo '?')"
  # Its own http-01 listener on the port (while a challenge is pending it
  # also listens on its default ports, 80, 402 and 4402); no self-test,
  # which would look the name up in the system's DNS.
  script='mkdir -p "$6/state/conf" && cat > "$6/state/conf/target" <<EOF
request:
  provider: $1
  challenge:
    http-self-test: false
    http-ports:
      - 127.0.0.1:$4
    webroot-paths:
      - $6/webroot
EOF
echo "\"acme-enter-email\": \"$5\"" > "$6/state/conf/responses"
SSL_CERT_FILE="$2" acmetool --batch --state="$6/state" --hooks="$6/hooks" want "$3"'
  cmd=(sh -c "$script" "${ARGS[@]}")
}

ran=()
missing=()
for name in $CLIENTS; do
  cmd=() version="" script=""
  if ! "client_$name"; then
    missing+=("$name")
    continue
  fi
  echo "== $name: $version" >&2
  flags=(--json --client-name "$name" --timeout "$TIMEOUT")
  [ -n "${SCENARIOS:-}" ] && flags+=(--scenario "$SCENARIOS")
  RUST_LOG=${RUST_LOG:-warn} "$KILN" conformance "${flags[@]}" -- "${cmd[@]}" \
    > "$results/$name.json" || true
  printf '%s\n' "$version" > "$results/$name.version"
  printf '%s\n' "$script" > "$results/$name.script"
  if [ -n "$script" ]; then
    # The snippet itself is shown below the command.
    shown=()
    for word in "${cmd[@]}"; do
      if [ "$word" = "$script" ]; then shown+=('"$SCRIPT"'); else shown+=("$word"); fi
    done
    printf '%s ' "${shown[@]}" > "$results/$name.command"
  else
    printf '%s ' "${cmd[@]#$PWD/}" > "$results/$name.command"
  fi
  ran+=("$name")
done

python3 - "$results" "$OUT" "${missing[*]:-}" "${ran[@]}" <<'PY'
import json, sys, datetime
results, out, missing, names = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4:]
cards = {}
for n in names:
    try:
        cards[n] = json.load(open(f"{results}/{n}.json"))
    except ValueError:
        cards[n] = None
scenarios = []
for card in cards.values():
    for s in (card or {}).get("scenarios", []):
        if s["name"] not in [x["name"] for x in scenarios]:
            scenarios.append(s)
def cell(card, name):
    for s in (card or {}).get("scenarios", []):
        if s["name"] == name:
            return s["verdict"]
    return "—"
lines = [
    "# Client compatibility",
    "",
    "What `kiln conformance` (README, \"Client conformance\") reports for the ACME",
    "clients installed on the machine that ran `scripts/compat-matrix.sh`,",
    f"on {datetime.date.today().isoformat()}. Regenerate it with that script; a",
    "client's row is only as current as the version named below it.",
    "",
    "| scenario | required | " + " | ".join(names) + " |",
    "|---|---|" + "---|" * len(names),
]
for s in scenarios:
    req = "yes" if s["required"] else "info"
    lines.append(f"| `{s['name']}` | {req} | " + " | ".join(cell(cards[n], s["name"]) for n in names) + " |")
lines.append("| **passed / failed** | | " + " | ".join(
    f"{c['passed']} / {c['failed']}" if c else "did not run" for c in cards.values()) + " |")
if missing:
    lines += ["", "Not installed here, so not run: " + ", ".join(missing) + "."]
for n in names:
    card = cards[n]
    version = open(f"{results}/{n}.version").read().strip()
    command = open(f"{results}/{n}.command").read().strip()
    script = open(f"{results}/{n}.script").read().strip()
    lines += ["", f"## {n}", "", f"{version}", "", "```sh", f"kiln conformance -- {command}", "```", ""]
    if script:
        lines += ["where `$SCRIPT` (the placeholders arrive as `$1`..`$6`) is", "", "```sh", script, "```", ""]
    if not card:
        lines.append("`kiln conformance` printed no scorecard for this client.")
        continue
    lines += ["| scenario | verdict | why | evidence |", "|---|---|---|---|"]
    for s in card["scenarios"]:
        e = s["evidence"]
        ev = [f"exit {e['exit_code']}" if e["exit_code"] is not None else "killed",
              f"{e['took_ms'] / 1000:.1f} s", f"{e['polls']} polls"]
        if e.get("shortest_gap_ms") is not None:
            ev.append(f"shortest gap {e['shortest_gap_ms'] / 1000:.1f} s")
        if e.get("faults_injected"):
            ev.append(f"{e['faults_injected']} fault(s)")
        if e.get("last_error_line"):
            ev.append("said: " + e["last_error_line"].replace("|", "\\|")[:160])
        why = s["why"].replace("|", "\\|")
        lines.append(f"| `{s['name']}` | {s['verdict']} | {why} | {'; '.join(ev)} |")
open(out, "w").write("\n".join(lines) + "\n")
print(f"wrote {out}", file=sys.stderr)
PY
