#!/usr/bin/env bash
# Soak test of `patrol run` (a script, not CI): the agent against several reference validators
# (`patrol validator serve`) and a fake GitHub (`patrol dev fake-github`), all on 127.0.0.1, for
# 30 minutes by default, with random faults every few seconds:
#   - a validator frozen (SIGSTOP) for a while: calls time out, backoff, re-check;
#   - a validator restarted with an empty PAT store: the PAT must be re-sent;
#   - GitHub answering 503 for a while: validators say inconclusive, our preflight is transient;
#   - GitHub answering slowly: validators' handlers outlast our check timeout (no_response);
#   - the PAT file rotated between two valid tokens: reload, re-broadcast everywhere;
#   - SIGHUP to the agent: reload.
# It samples the agent's RSS and open file descriptors from /proc every SAMPLE seconds and prints
# whether they stay flat (after a warm-up), plus the coverage and counters at the end.
#
#   DURATION=1800  seconds to run          SAMPLE=30     seconds between samples
#   WARMUP=120     seconds before the baseline sample
#   VALIDATORS=4   reference validators    FAULT_EVERY=20 seconds between faults (on average)
#   PATROL_BIN     the patrol binary (default: target/release/patrol if built, else target/debug/patrol)
#   SOAK_DIR       where logs and samples go (default: a new temp dir; kept)
#
# Exit status: 0 when RSS and fds stayed flat and the agent stopped cleanly (exit 0), 1 otherwise.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${DURATION:-1800}"
SAMPLE="${SAMPLE:-30}"
WARMUP="${WARMUP:-120}"
VALIDATORS="${VALIDATORS:-4}"
FAULT_EVERY="${FAULT_EVERY:-20}"
if [[ -z "${PATROL_BIN:-}" ]]; then
    if [[ -x "${repo_root}/target/release/patrol" ]]; then
        PATROL_BIN="${repo_root}/target/release/patrol"
    else
        PATROL_BIN="${repo_root}/target/debug/patrol"
    fi
fi
[[ -x "${PATROL_BIN}" ]] || { echo "soak.sh: no patrol binary at ${PATROL_BIN}; cargo build --release first" >&2; exit 1; }
dir="${SOAK_DIR:-$(mktemp -d -t patrol-soak-XXXXXX)}"
mkdir -p "${dir}"
log() { printf '%s soak: %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "${dir}/soak.log" >&2; }

pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill -CONT "$p" 2>/dev/null || true
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Wait for a JSON ready line ({"ready":true,"listen":"127.0.0.1:PORT",...}) in FILE; print the port.
ready_port() {
    local file="$1" i
    for i in $(seq 1 200); do
        if grep -q '"ready":true' "$file" 2>/dev/null; then
            grep '"ready":true' "$file" | head -n1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["listen"].rsplit(":",1)[1])'
            return 0
        fi
        sleep 0.1
    done
    echo "soak.sh: no ready line in $file" >&2
    return 1
}

PAT_A="ghp_soakTokenAAAAAAAAAAAAAAAAAAAAAAAAAAA1"
PAT_B="ghp_soakTokenBBBBBBBBBBBBBBBBBBBBBBBBBBB2"
MINER_SEED="0xfac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e"
MINER_HOTKEY="5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"

# fake GitHub: both PATs belong to one account (validators pin the GitHub id per hotkey)
cat >"${dir}/github.json" <<EOF
{"accounts": [{"token": "${PAT_A}", "id": 4242, "login": "soak-miner", "expiry": "2031-01-01 00:00:00 UTC"},
              {"token": "${PAT_B}", "id": 4242, "login": "soak-miner"}]}
EOF
"${PATROL_BIN}" dev fake-github --config "${dir}/github.json" --listen 127.0.0.1:0 >"${dir}/github.out" 2>"${dir}/github.log" &
pids+=($!)
gh_port="$(ready_port "${dir}/github.out")"
log "fake GitHub on 127.0.0.1:${gh_port}"

# reference validators on fixed ports (a restart comes back on the same one)
declare -a vport vpid vhotkey
start_validator() {
    local i="$1" seed
    seed="0x$(printf '%02x' $((0x10 + i)))$(printf '%062d' 0 | tr 0 "$(printf '%x' $((i % 10)))")"
    rm -f "${dir}/v${i}.out"
    "${PATROL_BIN}" validator serve --hotkey-seed "${seed}" --listen "127.0.0.1:${vport[$i]}" \
        --store "${dir}/v${i}-store.json" --miner "0:${MINER_HOTKEY}:100" \
        --github-api-url "http://127.0.0.1:${gh_port}" --identity-attempts 1 --github-timeout 3s \
        >"${dir}/v${i}.out" 2>>"${dir}/v${i}.log" &
    vpid[$i]=$!
    pids+=("${vpid[$i]}")
    ready_port "${dir}/v${i}.out" >/dev/null
    vhotkey[$i]="$(grep '"ready":true' "${dir}/v${i}.out" | head -n1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["hotkey"])')"
}
for i in $(seq 0 $((VALIDATORS - 1))); do
    vport[$i]="$(free_port)"
    start_validator "$i"
done
log "${VALIDATORS} reference validators up"

# the miner
install -m 600 /dev/null "${dir}/hotkey"
printf '{"secretSeed":"%s"}' "${MINER_SEED}" >"${dir}/hotkey"
install -m 600 /dev/null "${dir}/pat"
echo "${PAT_A}" >"${dir}/pat"
listen="$(free_port)"
{
    cat <<EOF
[wallet]
hotkey_file = "hotkey"
[pat]
file = "pat"
[agent]
state_dir = "state"
listen = "127.0.0.1:${listen}"
log_format = "text"
[github]
api_url = "http://127.0.0.1:${gh_port}"
timeout = "3s"
[reconcile]
interval = "60s"
jitter = "10s"
check_timeout = "3s"
broadcast_timeout = "5s"
backoff_initial = "2s"
backoff_max = "30s"
recheck_inconclusive = "20s"
EOF
    for i in $(seq 0 $((VALIDATORS - 1))); do
        printf '[[validators.static]]\nuid = %d\nhotkey = "%s"\nip = "127.0.0.1"\nport = %d\nstake = %d\nvtrust = 0.9\n' \
            $((i + 1)) "${vhotkey[$i]}" "${vport[$i]}" $((20000 + 1000 * i))
    done
} >"${dir}/agent.toml"
(cd "${dir}" && exec "${PATROL_BIN}" run --config agent.toml 2>"${dir}/agent.log") &
agent=$!
pids+=("${agent}")
log "patrol run (pid ${agent}) for ${DURATION}s; samples every ${SAMPLE}s in ${dir}/samples.csv"

metric() { # metric NAME: the first sample's value
    # awk reads everything (no early exit), so curl never dies of SIGPIPE under pipefail
    { curl -s --max-time 3 "http://127.0.0.1:${listen}/metrics" 2>/dev/null || true; } |
        awk -v n="$1" '!found && $1 ~ "^"n"([{]|$)" {print $2; found=1}'
}

echo "t_s,rss_kb,fds,threads,stake_coverage" >"${dir}/samples.csv"
sample() {
    local t="$1" rss fds threads cov
    rss="$(awk '/^VmRSS:/ {print $2}' "/proc/${agent}/status")"
    threads="$(awk '/^Threads:/ {print $2}' "/proc/${agent}/status")"
    fds="$(find "/proc/${agent}/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
    cov="$(metric patrol_stake_weighted_coverage_ratio)"
    echo "${t},${rss},${fds},${threads},${cov:-}" >>"${dir}/samples.csv"
}

fault() {
    local i=$((RANDOM % VALIDATORS)) kind=$((RANDOM % 6))
    case "${kind}" in
        0)
            log "fault: validator ${i} frozen for 15 s"
            kill -STOP "${vpid[$i]}" 2>/dev/null || true
            (sleep 15; kill -CONT "${vpid[$i]}" 2>/dev/null || true) &
            ;;
        1)
            log "fault: validator ${i} restarted with an empty store"
            kill -CONT "${vpid[$i]}" 2>/dev/null || true
            kill "${vpid[$i]}" 2>/dev/null || true
            wait "${vpid[$i]}" 2>/dev/null || true
            rm -f "${dir}/v${i}-store.json"
            start_validator "$i"
            ;;
        2)
            log "fault: GitHub answers 503 to the next 10 requests"
            curl -s --max-time 3 -X POST "http://127.0.0.1:${gh_port}/_fake/faults" -H 'content-type: application/json' \
                -d '{"scope":"both","times":10,"fault":{"kind":"status","status":503}}' >/dev/null || true
            ;;
        3)
            if grep -q "${PAT_A}" "${dir}/pat"; then new="${PAT_B}"; else new="${PAT_A}"; fi
            log "fault: PAT rotated"
            install -m 600 /dev/null "${dir}/pat.new"
            echo "${new}" >"${dir}/pat.new"
            mv "${dir}/pat.new" "${dir}/pat"
            ;;
        4)
            log "fault: SIGHUP"
            kill -HUP "${agent}"
            ;;
        5)
            log "fault: GitHub /user answers delayed 4 s (next 5 requests): validators' checks time out"
            curl -s --max-time 3 -X POST "http://127.0.0.1:${gh_port}/_fake/faults" -H 'content-type: application/json' \
                -d '{"scope":"user","times":5,"fault":{"kind":"delay","ms":4000}}' >/dev/null || true
            ;;
    esac
}

start=$(date +%s)
next_sample=$((start + WARMUP))
next_fault=$((start + 5))
sample 0
while true; do
    now=$(date +%s)
    elapsed=$((now - start))
    ((elapsed >= DURATION)) && break
    if ! kill -0 "${agent}" 2>/dev/null; then
        log "ERROR: the agent died; see ${dir}/agent.log"
        exit 1
    fi
    if ((now >= next_fault)); then
        fault
        next_fault=$((now + 1 + RANDOM % (2 * FAULT_EVERY)))
    fi
    if ((now >= next_sample)); then
        sample "${elapsed}"
        next_sample=$((now + SAMPLE))
    fi
    sleep 1
done
sample "$(($(date +%s) - start))"

log "stopping the agent (SIGTERM)"
t0=$(date +%s%N)
kill -TERM "${agent}"
rc=0
wait "${agent}" || rc=$?
stop_ms=$((($(date +%s%N) - t0) / 1000000))

verdict=0
python3 - "${dir}/samples.csv" "${rc}" "${stop_ms}" "${WARMUP}" <<'EOF' || verdict=$?
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]))]
rc, stop_ms, warmup = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
steady = [r for r in rows if int(r["t_s"]) >= warmup] or rows
q = max(1, len(steady) // 4)
first, last = steady[:q], steady[-q:]
mean = lambda rs, k: sum(int(r[k]) for r in rs) / len(rs)
rss0, rss1 = mean(first, "rss_kb"), mean(last, "rss_kb")
fd0, fd1 = max(int(r["fds"]) for r in first), max(int(r["fds"]) for r in last)
rss_flat = rss1 <= rss0 * 1.15 + 1024
fds_flat = fd1 <= fd0 + 2
print(f"samples: {len(rows)} ({len(steady)} after the {warmup}s warm-up)")
print(f"RSS: start {rss0/1024:.1f} MiB, end {rss1/1024:.1f} MiB, max {max(int(r['rss_kb']) for r in steady)/1024:.1f} MiB -> {'flat' if rss_flat else 'GROWING'}")
print(f"fds: start {fd0}, end {fd1}, max {max(int(r['fds']) for r in steady)} -> {'flat' if fds_flat else 'GROWING'}")
print(f"threads: start {steady[0]['threads']}, end {steady[-1]['threads']}")
print(f"stake coverage at the end: {rows[-1]['stake_coverage'] or '?'}")
print(f"stop: exit {rc} after {stop_ms} ms")
sys.exit(0 if rss_flat and fds_flat and rc == 0 else 1)
EOF
log "faults: $(grep -c 'fault:' "${dir}/soak.log") ; broadcasts accepted: $(grep -c 'result="accepted"' "${dir}/agent.log" || true); reloads: $(grep -c 'configuration reloaded' "${dir}/agent.log" || true)"
if grep -q -e "${PAT_A}" -e "${PAT_B}" "${dir}/agent.log"; then
    log "ERROR: a PAT appears in the agent log"
    verdict=1
fi
log "logs and samples kept in ${dir}"
exit "${verdict}"
