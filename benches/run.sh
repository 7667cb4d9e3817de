#!/usr/bin/env bash
# patrol against the Python reference (real bittensor 10.3.1), everything on 127.0.0.1:
#   1. one check fan-out to N validators (N = 16, 64, 256; a quarter never answer, the rest answer
#      after 5-50 ms): patrol vs bt.Dendrite, wall time and wall time minus the timeout;
#   2. cold start to result: `patrol check --json` vs the equivalent Python script;
#   3. footprint: peak RSS and CPU of one `patrol reconcile`, and of `patrol run` idle for 10 minutes;
#   4. validator side: verified PatCheckSynapse requests/s, `patrol validator serve` vs bt.Axon.
# Prints markdown tables (medians, ratios) and writes results.json/results.md to $BENCH_OUT.
# Benchmarks never fail on speed; they exit non-zero only when something could not run.
#
#   benches/run.sh                  # the full run recorded in BENCHMARKS.md (~25 min on 2 cores)
#   BENCH_QUICK=1 benches/run.sh    # a smoke run: N = 16 64, 3 reps, 20 s idle, 3 s axon points
#
# Knobs (environment): BENCH_REPS (7), BENCH_NS ("16 64 256"), BENCH_TIMEOUT (2 seconds, both
# clients), BENCH_CONCURRENCY (patrol's [reconcile] concurrency; 0 = N, default), BENCH_IDLE_SECS
# (600), BENCH_IDLE_CONCURRENCY (that of `patrol run`; 0 = N), BENCH_AXON_DURATION (10),
# BENCH_AXON_WARMUP (1), BENCH_AXON_REPS (3), BENCH_AXON_CONCURRENCY ("1 16 64"),
# BENCH_SEED (1), BENCH_ONLY ("fanout cold footprint axon"), BENCH_OUT (target/bench), BENCH_KEEP=1
# (keep the scratch dir with every process's stderr), BENCH_PATROL (a patrol binary to measure instead
# of this tree's release build).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { echo "bench: $*" >&2; }

if [[ "${BENCH_QUICK:-0}" == "1" ]]; then
    : "${BENCH_REPS:=3}" "${BENCH_NS:=16 64}" "${BENCH_IDLE_SECS:=20}" "${BENCH_AXON_DURATION:=3}"
    : "${BENCH_AXON_REPS:=1}"
fi

log "building patrol and the benchmark programs (release)…"
cargo build --release --quiet --bin patrol --example bench_farm --example bench_fanout --example axon_load
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
py="$(bash scripts/setup-python.sh | tail -n 1)"
out="${BENCH_OUT:-$target_dir/bench}"
patrol="${BENCH_PATROL:-$target_dir/release/patrol}" # another build of patrol, for A/B comparisons

driver_pid=""
cleanup() {
    if [[ -n "$driver_pid" ]] && kill -0 "$driver_pid" 2>/dev/null; then
        kill "$driver_pid" 2>/dev/null || true
        wait "$driver_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

python3 benches/bench.py \
    --patrol "$patrol" \
    --farm "$target_dir/release/examples/bench_farm" \
    --fanout "$target_dir/release/examples/bench_fanout" \
    --load "$target_dir/release/examples/axon_load" \
    --py "$py" \
    --out "$out" \
    --reps "${BENCH_REPS:-7}" \
    --ns "${BENCH_NS:-16 64 256}" \
    --timeout "${BENCH_TIMEOUT:-2}" \
    --concurrency "${BENCH_CONCURRENCY:-0}" \
    --seed "${BENCH_SEED:-1}" \
    --idle-secs "${BENCH_IDLE_SECS:-600}" \
    --idle-concurrency "${BENCH_IDLE_CONCURRENCY:-0}" \
    --axon-duration "${BENCH_AXON_DURATION:-10}" \
    --axon-reps "${BENCH_AXON_REPS:-3}" \
    --axon-warmup "${BENCH_AXON_WARMUP:-1}" \
    --axon-concurrency "${BENCH_AXON_CONCURRENCY:-1 16 64}" \
    --only "${BENCH_ONLY:-fanout cold footprint axon}" &
driver_pid=$!
wait "$driver_pid"
status=$?
driver_pid=""
exit "$status"
