#!/usr/bin/env python3
"""Buckets a `perf report --no-children --sort comm,dso,sym` (flat.txt) and
lists the inclusive share of Kiln's own functions (children.txt)."""
import re, sys
from collections import defaultdict

d = sys.argv[1]
LINE = re.compile(r'^\s*([\d.]+)%\s+(\S.*?)\s{2,}(\S+)\s+\[(.)\]\s+(.*)$')

BUCKETS = [  # (bucket, test on (dso, sym))
    ('SQLite (the database engine)', lambda dso, s: 'sqlite3' in s or 'sqlite' in dso),
    ('kernel: fsync / filesystem', lambda dso, s: dso.startswith('[kernel') and re.search(r'ext4|jbd2|fsync|xfs|btrfs|blk|vfs_|filemap|iomap', s)),
    ('kernel: network / loopback TCP', lambda dso, s: dso.startswith('[kernel') and re.search(r'tcp|inet|sock|skb|net_|ip_|__dev|loopback|napi|nf_', s)),
    ('kernel: scheduling / futex / epoll / other syscalls', lambda dso, s: dso.startswith('[kernel')),
    ('ECDSA / EC math (OpenSSL)', lambda dso, s: 'libcrypto' in dso and re.search(r'ecp_|ec_|ecdsa|bn_|BN_|nistz|p256', s)),
    ('hashing (OpenSSL SHA)', lambda dso, s: 'libcrypto' in dso and re.search(r'sha|SHA', s)),
    ('TLS record crypto (AES-GCM/ChaCha)', lambda dso, s: 'libcrypto' in dso and re.search(r'aes|gcm|chacha|poly|AES|ghash', s)),
    ('other OpenSSL (ASN.1, X.509, TLS state)', lambda dso, s: 'libcrypto' in dso or 'libssl' in dso),
    ('allocator / memcpy (libc)', lambda dso, s: 'libc' in dso and re.search(r'malloc|free|memcpy|memmove|memset|realloc|_int_|cfree|calloc', s)),
    ('other libc', lambda dso, s: 'libc' in dso),
    ('JSON (serde_json)', lambda dso, s: 'serde_json' in s),
    ('JWS / JWK (josekit, base64)', lambda dso, s: 'josekit' in s or 'base64' in s),
    ('x509-parser / der / asn1', lambda dso, s: re.search(r'x509_parser|der_parser|asn1_rs|nom::', s)),
    ('sqlx', lambda dso, s: 'sqlx' in s),
    ('HTTP (hyper, h2, axum, reqwest, http)', lambda dso, s: re.search(r'hyper|\bh2::|axum|reqwest|http::|httparse|tower', s)),
    ('tokio runtime', lambda dso, s: 'tokio' in s),
    ('tracing / logging', lambda dso, s: re.search(r'tracing|fmt::|core::fmt|nu_ansi', s)),
    ('messagepack (rmp)', lambda dso, s: 'rmp' in s),
    ('Kiln code', lambda dso, s: re.search(r'\b(api|store|queue|signer|ct_submitter|validator|caa_checker|domain|ct|dns|fake_ct_log|sweeper|kiln)::', s)),
]

buckets = defaultdict(float); comms = defaultdict(float); dsos = defaultdict(float)
top = []
for line in open(f'{d}/flat.txt', errors='replace'):
    m = LINE.match(line)
    if not m:
        continue
    pct, comm, dso, _, sym = float(m.group(1)), m.group(2).strip(), m.group(3), m.group(4), m.group(5).strip()
    comms[comm] += pct; dsos[dso] += pct
    top.append((pct, comm, dso, sym))
    for name, test in BUCKETS:
        if test(dso, sym):
            buckets[name] += pct
            break
    else:
        buckets['other Rust (std, hashbrown, …)' if dso not in ('[unknown]',) else 'unknown'] += pct

def table(title, rows, n=20):
    print(f'\n**{title}**\n\n| share of kiln CPU samples | |\n|---:|---|')
    for k, v in sorted(rows.items(), key=lambda kv: -kv[1])[:n]:
        print(f'| {v:5.1f}% | {k} |')

print(open(f'{d}/cpu.txt').read().strip())
table('by bucket (self time; rows under 0.2% dropped)', buckets)
table('by thread', comms, 10)
table('by library', dsos, 10)
print('\n**top symbols (self)**\n\n| self | thread | symbol |\n|---:|---|---|')
for pct, comm, dso, sym in sorted(top, reverse=True)[:25]:
    print(f'| {pct:4.1f}% | {comm} | `{sym[:110]}` |')

# Inclusive time of Kiln's own entry points.
CH = re.compile(r'^\s*([\d.]+)%\s+([\d.]+)%\s+\[(.)\]\s+(.*)$')
keep = re.compile(r'^(api|store|queue|signer|ct_submitter|validator|caa_checker|fake_ct_log|sweeper|kiln|josekit|sqlx_sqlite|sqlx_core|ct|openssl)::')
inc = {}
for line in open(f'{d}/children.txt', errors='replace'):
    m = CH.match(line)
    if m and keep.match(m.group(4)):
        name = re.sub(r'::h[0-9a-f]{16}$', '', m.group(4))
        name = re.sub(r'\{\{closure\}\}', '{closure}', name)
        inc[name] = max(inc.get(name, 0.0), float(m.group(1)))
print('\n**inclusive time of Kiln functions (children; top 40)**\n\n| incl. | function |\n|---:|---|')
for k, v in sorted(inc.items(), key=lambda kv: -kv[1])[:40]:
    print(f'| {v:5.1f}% | `{k[:120]}` |')
