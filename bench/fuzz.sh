#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ one after another (all of them, or
# those named), each for SECONDS_PER_TARGET seconds in one libFuzzer
# process (one core), and prints per target: execs, exec/s, crashes.
# Exits non-zero if any target crashed (a panic, an OOM, a timeout) or did
# not run. Needs a nightly toolchain and cargo-fuzz (fuzz/README.md).
#
#   SECONDS_PER_TARGET=600 bench/fuzz.sh [TARGET...]
#
# New corpus entries go to $KILN_FUZZ_WORK/corpus/TARGET (the committed
# seeds in fuzz/corpus/TARGET are only read); crashing inputs to
# fuzz/artifacts/TARGET/; logs to $KILN_FUZZ_WORK/TARGET.log; the table
# and the tail of each failing log to bench/results/fuzz-<time>/summary.txt.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZ=$ROOT/fuzz
SECS=${SECONDS_PER_TARGET:-600}
TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
# libFuzzer's per-input limit; one input slower than this is a finding.
INPUT_TIMEOUT=${FUZZ_INPUT_TIMEOUT:-25}
WORK=${KILN_FUZZ_WORK:-/tmp/kiln-fuzz}
RESULTS=${KILN_BENCH_RESULTS:-$ROOT/bench/results}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/fuzz}

say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

cd "$FUZZ" || exit 2
if ! cargo +"$TOOLCHAIN" fuzz --version >/dev/null 2>&1; then
  say "cargo-fuzz is missing: cargo install cargo-fuzz (and rustup toolchain install nightly)"
  exit 2
fi
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +"$TOOLCHAIN" fuzz list)
fi
[ ${#targets[@]} -gt 0 ] || { say "no fuzz targets"; exit 2; }

say "building ${targets[*]}"
for t in "${targets[@]}"; do
  cargo +"$TOOLCHAIN" fuzz build "$t" >/dev/null || { say "build of $t failed"; exit 2; }
done

out=$RESULTS/fuzz-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$WORK" "$out"
summary=$out/summary.txt
echo "SECONDS_PER_TARGET=$SECS bench/fuzz.sh ${targets[*]}  ($(date -u +%FT%TZ), $(nproc) cores)" >"$summary"
printf '%-10s %12s %9s %8s  %s\n' target execs exec/s crashes result | tee -a "$summary"

failed=0
for t in "${targets[@]}"; do
  log=$WORK/$t.log
  mkdir -p "$WORK/corpus/$t"
  say "fuzzing $t for ${SECS}s (log: $log)"
  cargo +"$TOOLCHAIN" fuzz run "$t" "$WORK/corpus/$t" "$FUZZ/corpus/$t" -- \
    -max_total_time="$SECS" -timeout="$INPUT_TIMEOUT" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  if [ -z "$execs" ]; then # no final stats: the last status line
    execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    rate=$(grep -oE 'exec/s: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  fi
  crashes=$(grep -c 'Test unit written to' "$log")
  if [ "$crashes" -gt 0 ]; then
    result="CRASH: $(grep -o 'Test unit written to .*' "$log" | sed 's/Test unit written to //' | tr '\n' ' ')"
  elif [ "$rc" -ne 0 ]; then
    result="FAILED (exit $rc)"
  else
    result=ok
  fi
  printf '%-10s %12s %9s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$crashes" "$result" | tee -a "$summary"
  if [ "$result" != ok ]; then
    failed=1
    { echo; echo "== $t: last 60 lines of $log"; tail -60 "$log"; } >>"$summary"
  fi
done
say "summary: $summary"
exit "$failed"
