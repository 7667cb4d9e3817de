#!/usr/bin/env bash
# Benchmark 4 alone: verified PatCheckSynapse requests per second, `patrol validator serve` (release
# build) vs a real Python bt.Axon (bittensor 10.3.1) running gittensor's check pipeline
# (benches/bt_bench_axon.py), at 1/16/64 concurrent clients (examples/axon_load.rs), on 127.0.0.1.
#
# Both axons: validator hotkey seed 0x11…, the same miner registered at uid 1 (stake 100), the same
# 200-entry miner_pats.json (the miner has no PAT in it, so neither side calls GitHub), blacklist +
# signature + nonce verification + priority + a store read per request. The load generator signs
# every request with a fresh nonce, one uuid and one keep-alive connection per client.
#
#   DURATION=10 WARMUP=1 REPS=3 CONCURRENCY="1 16 64" benches/axon_throughput.sh
# is `BENCH_ONLY=axon benches/run.sh` with these knobs (see there for the others).
set -euo pipefail
export BENCH_ONLY=axon
export BENCH_AXON_DURATION="${DURATION:-${BENCH_AXON_DURATION:-10}}"
export BENCH_AXON_REPS="${REPS:-${BENCH_AXON_REPS:-3}}"
export BENCH_AXON_CONCURRENCY="${CONCURRENCY:-${BENCH_AXON_CONCURRENCY:-1 16 64}}"
if [[ -n "${WARMUP:-}" ]]; then export BENCH_AXON_WARMUP="$WARMUP"; fi
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run.sh"
