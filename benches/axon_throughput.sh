#!/usr/bin/env bash
# Verified PatCheckSynapse requests per second: `patrol validator serve` (release build) vs a real
# Python bt.Axon (bittensor 10.3.1) running gittensor's check pipeline (benches/bt_bench_axon.py),
# on this machine, in this run, at 1/16/64 concurrent clients. Prints a table and the ratio.
#
# Both axons: validator hotkey seed 0x11…, the same miner registered at uid 1 (stake 100), the same
# 200-entry miner_pats.json (the miner has no PAT in it, so neither side calls GitHub), blacklist +
# signature + nonce verification + priority + a store read per request. The load generator
# (examples/axon_load.rs) signs every request with a fresh nonce, one uuid and one keep-alive
# connection per client. Everything on 127.0.0.1.
#
#   DURATION=10 WARMUP=1 CONCURRENCY="1 16 64" benches/axon_throughput.sh
set -euo pipefail

DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-1}"
CONCURRENCY="${CONCURRENCY:-1 16 64}"
VALIDATOR_SEED="0x1111111111111111111111111111111111111111111111111111111111111111"
MINER_SEED="0xfac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e" # the dev phrase
MINER_HOTKEY="5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"
VALIDATOR_HOTKEY="5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { echo "axon_throughput: $*" >&2; }

log "building patrol and the load generator (release)…"
cargo build --release --quiet --bin patrol --example axon_load
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
patrol="$target_dir/release/patrol"
load="$target_dir/release/examples/axon_load"
py="$(bash scripts/setup-python.sh | tail -n 1)"

tmp="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# The same store for both: 200 other miners (uids 2..201), none for the benchmark miner.
mkdir -p "$tmp/patrol" "$tmp/python"
python3 - "$tmp/patrol/miner_pats.json" <<'EOF'
import json, sys
entries = [{"uid": u, "hotkey": f"5Filler{u:041d}", "pat": f"ghp_filler{u:030d}", "github_id": str(10_000 + u),
            "stored_at": "2026-01-01T00:00:00+00:00"} for u in range(2, 202)]
with open(sys.argv[1], "w") as fh:
    json.dump(entries, fh, indent=2)
EOF
cp "$tmp/patrol/miner_pats.json" "$tmp/python/miner_pats.json"
chmod 600 "$tmp"/*/miner_pats.json

# wait_ready FILE PID: the port from the process's JSON ready line.
wait_ready() {
    local file="$1" pid="$2"
    for _ in $(seq 1 600); do
        if [[ -s "$file" ]]; then
            python3 -c 'import json,sys; v=json.loads(open(sys.argv[1]).readline()); print(v.get("port") or v["listen"].rsplit(":",1)[1])' "$file"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { log "server exited early"; cat "$file".err >&2 || true; return 1; }
        sleep 0.1
    done
    log "no ready line"; return 1
}

"$patrol" validator serve --hotkey-seed "$VALIDATOR_SEED" --listen 127.0.0.1:0 \
    --store "$tmp/patrol/miner_pats.json" --miner "0:$VALIDATOR_HOTKEY:0" --miner "1:$MINER_HOTKEY:100" \
    --github-api-url http://127.0.0.1:9 >"$tmp/patrol.ready" 2>"$tmp/patrol.ready.err" &
pids+=($!)
patrol_port="$(wait_ready "$tmp/patrol.ready" "${pids[-1]}")"

"$py" -B benches/bt_bench_axon.py --store "$tmp/python/miner_pats.json" --hotkey-seed "$VALIDATOR_SEED" \
    --miner "$VALIDATOR_HOTKEY:0" --miner "$MINER_HOTKEY:100" >"$tmp/python.ready" 2>"$tmp/python.ready.err" &
pids+=($!)
python_port="$(wait_ready "$tmp/python.ready" "${pids[-1]}")"
log "patrol on 127.0.0.1:$patrol_port, python bt.Axon on 127.0.0.1:$python_port; ${DURATION}s per point"

run() { # PORT CONCURRENCY -> JSON line
    "$load" --target "127.0.0.1:$1:$VALIDATOR_HOTKEY" --seed "$MINER_SEED" --concurrency "$2" \
        --duration "$DURATION" --warmup "$WARMUP"
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

printf '%-12s %14s %14s %10s %22s %22s\n' concurrency patrol_rps python_rps ratio "patrol p50/p99 ms" "python p50/p99 ms"
for c in $CONCURRENCY; do
    p="$(run "$patrol_port" "$c")"
    q="$(run "$python_port" "$c")"
    for r in "$p" "$q"; do
        if [[ "$(field "$r" errors)" != "0" ]]; then log "errors: $r"; fi
    done
    python3 - "$c" "$p" "$q" <<'EOF'
import json, sys
c, p, q = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ratio = p["rps"] / q["rps"] if q["rps"] else float("inf")
print(f'{c:<12} {p["rps"]:14.1f} {q["rps"]:14.1f} {ratio:9.1f}x {p["p50_ms"]:10.2f}/{p["p99_ms"]:<11.2f} {q["p50_ms"]:10.2f}/{q["p99_ms"]:<11.2f}')
EOF
    echo "{\"concurrency\": $c, \"patrol\": $p, \"python\": $q}" >>"$tmp/results.jsonl"
done
log "raw results:"
cat "$tmp/results.jsonl" >&2
