#!/usr/bin/env python3
"""Summarizes kiln-bench JSON reports in a directory: per target (the label
without its trailing ' rN'), the median over rounds of each figure, and the
ratio of the first target to each other one, as a Markdown table.

    bench/summarize.py RESULTS_DIR [BASELINE_TARGET]
"""
import json, os, statistics, sys
from collections import OrderedDict, defaultdict

def load(d):
    runs = []
    for f in sorted(os.listdir(d)):
        if f.endswith('.json'):
            with open(os.path.join(d, f)) as fh:
                try:
                    runs.append(json.load(fh))
                except json.JSONDecodeError:
                    print(f'# skipped unreadable {f}', file=sys.stderr)
    return runs

def stalled_attempts(d):
    out = []
    for f in sorted(os.listdir(d)):
        if f.endswith('.failed'):
            try:
                out.append(json.load(open(os.path.join(d, f))))
            except (json.JSONDecodeError, OSError):
                pass
    return out

def target(label):
    head, sep, tail = label.rpartition(' r')
    return head if sep and tail.isdigit() else label

def rnd(label):
    head, sep, tail = label.rpartition(' r')
    return int(tail) if sep and tail.isdigit() else 0

FIGS = [
    ('orders/s', lambda r: r['orders_per_s']),
    ('orders/s while issuing (first start to last issuance)', lambda r: r.get('orders_per_s_while_issuing', r['orders_per_s'])),
    ('finalize POST p50', lambda r: r['finalize_post_ms']['p50']),
    ('finalize POST p95', lambda r: r['finalize_post_ms']['p95']),
    ('finalize POST p99', lambda r: r['finalize_post_ms']['p99']),
    ('finalize POST p99, every answered finalize', lambda r: r.get('finalize_post_all_ms', r['finalize_post_ms'])['p99']),
    ('finalize→valid p50', lambda r: r['finalize_to_valid_ms']['p50']),
    ('finalize→valid p95', lambda r: r['finalize_to_valid_ms']['p95']),
    ('finalize→valid p99', lambda r: r['finalize_to_valid_ms']['p99']),
    ('issuance p50', lambda r: r['issuance_ms']['p50']),
    ('issuance p99', lambda r: r['issuance_ms']['p99']),
    ('ok / requested', None),
]

def main():
    d = sys.argv[1]
    runs = load(d)
    groups = OrderedDict()
    for r in runs:
        groups.setdefault(target(r['label']), []).append(r)
    names = list(groups)
    if len(sys.argv) > 2 and sys.argv[2] in groups:
        names.remove(sys.argv[2]); names.insert(0, sys.argv[2])
    print('| figure (median of rounds; ms unless noted) | ' + ' | '.join(names) + ' |')
    print('|---' * (len(names) + 1) + '|')
    for fig, get in FIGS:
        cells = []
        for n in names:
            g = groups[n]
            if get is None:
                ok = sum(r['ok'] for r in g); req = sum(r['orders'] for r in g)
                cells.append(f'{ok}/{req} ({len(g)} rounds)')
            else:
                cells.append(f'{statistics.median(get(r) for r in g):.1f}')
        print(f'| {fig} | ' + ' | '.join(cells) + ' |')
    errors = defaultdict(lambda: defaultdict(int))
    for n in names:
        for r in groups[n]:
            for k, v in r['errors'].items():
                errors[n][k] += v
    for n in names:
        if errors[n]:
            print(f'\nerrors, {n}: ' + ', '.join(f'{k} ×{v}' for k, v in errors[n].items()))
    stalled = stalled_attempts(d)
    if stalled:
        print('\nrounds that stalled and were run again (Pebble 2.4 deadlock), rate while they issued: '
              + ', '.join(f"{r['label']}: {r['ok']}/{r['orders']} in {r.get('until_last_issued_s', 0):.2f} s, "
                          f"{r.get('orders_per_s_while_issuing', 0):.1f} orders/s" for r in stalled))
    if len(names) >= 2:
        base = names[0]
        for other in names[1:]:
            mb = statistics.median(r['orders_per_s'] for r in groups[base])
            mo = statistics.median(r['orders_per_s'] for r in groups[other])
            by_round = {rnd(r['label']): r['orders_per_s'] for r in groups[other]}
            paired = [r['orders_per_s'] / by_round[rnd(r['label'])]
                      for r in groups[base] if rnd(r["label"]) and by_round.get(rnd(r["label"]))]
            line = f'\nthroughput ratio {base} / {other}: {mb / mo:.2f}× (medians {mb:.1f} / {mo:.1f} orders/s)' if mo else ''
            if paired:
                line += f'; per-round ratios {", ".join(f"{x:.2f}" for x in paired)} (median {statistics.median(paired):.2f}×)'
            print(line)

if __name__ == '__main__':
    main()
