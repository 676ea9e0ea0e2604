#!/usr/bin/env python3
"""Attributes each perf sample (perf script -F comm,ip,sym) of the kiln
process to one activity, by the first matching frame walking from the leaf
up, and converts shares to CPU milliseconds per order.

    perf_per_order.py SCRIPT_TXT CPU_MS_PER_ORDER
"""
import re, sys
from collections import Counter

# (activity, frame pattern); the first rule any frame of the stack matches wins,
# rules checked in this order.
RULES = [
    # The database first: a signer's or api's call into the store is database
    # time, whoever makes it (store::db runs SQLite inline on reader threads
    # and on its one writer thread).
    ('database: store + SQLite (rusqlite) or PostgreSQL (sqlx)', r'^(store::|rusqlite::|sqlite3|sqlx)'),
    ('logging and tracing spans', r'^(tracing_subscriber::|tracing_core::|tracing::)'),
    ('validator: http-01 fetch and other validation work', r'^validator::'),
    ('fake CT logs in process (only with KILN_INPROCESS_CT=1)', r'^fake_ct_log::'),
    ('ct-submitter: submit, verify SCTs', r'^(ct_submitter::|ct::)'),
    ('signer: build, lint and sign precert + final cert', r'^signer::'),
    ('caa-checker', r'^caa_checker::'),
    ('api: JWS verification and account keys', r'^api::(jws|jwk|account_keys)'),
    ('api: nonces (HMAC)', r'^api::nonce'),
    ('api: CSR checks', r'^api::csr'),
    ('api: other handler work (JSON, routing)', r'^api::'),
    ('sweeper', r'^sweeper::'),
    ('TLS (OpenSSL handshakes, record encryption) on the HTTPS API', r'^(SSL_|ssl3_|tls_|ossl_statem|openssl::ssl::|tokio_openssl|axum_server::tls)'),
    ('HTTP serving (hyper / axum) outside the above', r'^(hyper|axum|h2)::'),
    ('queue runner / in-process queue', r'^queue::'),
    ('tokio scheduler, epoll, futex, idle wake-ups', r'^(tokio::|std::sys::|__futex|futex_|epoll|do_epoll|schedule|finish_task_switch)'),
]
COMPILED = [(name, re.compile(p)) for name, p in RULES]

def samples(path):
    stack, comm = [], None
    for line in open(path, errors='replace'):
        if not line.strip():
            if comm is not None:
                yield comm, stack
            stack, comm = [], None
            continue
        if not line.startswith(('\t', ' ')) or comm is None and not line.startswith('\t'):
            comm = line.strip(); stack = []
            continue
        parts = line.strip().split(None, 1)
        stack.append(parts[1] if len(parts) > 1 else '')
    if comm is not None:
        yield comm, stack

def main():
    path, per_order = sys.argv[1], float(sys.argv[2])
    counts = Counter(); total = 0
    for comm, stack in samples(path):
        total += 1
        for name, rx in COMPILED:
            if any(rx.search(f) for f in stack):
                counts[name] += 1
                break
        else:
            counts['kernel / unattributed (no Kiln frame in the unwound stack)'] += 1
    print(f'| activity | share of kiln CPU | ≈ CPU ms per order |\n|---|---:|---:|')
    for name, n in counts.most_common():
        print(f'| {name} | {100 * n / total:.1f}% | {per_order * n / total:.1f} |')
    print(f'| **total** ({total} samples) | 100% | {per_order:.1f} |')

if __name__ == '__main__':
    main()
