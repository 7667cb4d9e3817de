#!/usr/bin/env bash
# Short, time-bounded run of every cargo-fuzz target in fuzz/ (issue 7 §3); scripts/test.sh runs it
# in CI. Fails if any target finds a crash, a panic (a broken invariant), a timeout or an OOM; the
# reproducer is then in fuzz/artifacts/<target>/ (see fuzz/README.md to replay and minimise it).
#
# Stable Rust only. cargo-fuzz needs nightly just for the sanitizers (-Zsanitizer=address, its
# default) and -Zbuild-std; with `--sanitizer none` it passes only stable rustc flags (-Cpasses=
# sancov-module, -Cllvm-args=-sanitizer-coverage-*, --cfg fuzzing, -Cdebug-assertions), so no
# RUSTC_BOOTSTRAP is needed. We lose ASan, which safe Rust does not need (patrol has no unsafe
# parsing code); debug assertions and overflow checks stay on, so an overflow is a crash too.
#
# Environment:
#   PATROL_FUZZ_SECONDS  seconds per target (default 15; 0 = only replay the seeds)
#   PATROL_FUZZ_JOBS     targets run at once (default: number of CPUs; each uses one core)
#   PATROL_FUZZ_TARGETS  space-separated subset (default: all, from `cargo fuzz list`)
#   PATROL_FUZZ_RELEASE  1 = optimised build (slower to build, ~3-10x more executions per second;
#                        use for long runs), default 0 = `--dev` build (compiles in about half the time)
#
# Corpus: fuzz/seeds/<target>/ (committed, read-only here) plus fuzz/corpus/<target>/ (git-ignored,
# grows across local runs; a fresh clone starts from the seeds alone).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${PATROL_FUZZ_SECONDS:-15}"
jobs="${PATROL_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}"
release="${PATROL_FUZZ_RELEASE:-0}"
cargo_fuzz_version="0.13.2"

case "$secs" in '' | *[!0-9]*) echo "PATROL_FUZZ_SECONDS must be a whole number of seconds" >&2; exit 2 ;; esac
case "$jobs" in '' | *[!0-9]* | 0) echo "PATROL_FUZZ_JOBS must be a positive number" >&2; exit 2 ;; esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz $cargo_fuzz_version"
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi

# Same flags for build and run, so `cargo fuzz run` finds the build up to date.
flags=(--sanitizer none)
if [ "$release" = 1 ]; then flags+=(--release); else flags+=(--dev); fi

cd fuzz
targets="${PATROL_FUZZ_TARGETS:-$(cargo fuzz list)}"
started=$(date +%s)
echo "building fuzz targets (${flags[*]})"
cargo fuzz build "${flags[@]}"
echo "build took $(($(date +%s) - started)) s"

logs=target/smoke-logs
mkdir -p "$logs"

run_target() {
  local t="$1"
  mkdir -p "corpus/$t" "seeds/$t"
  local args=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  if [ "$secs" = 0 ]; then args+=(-runs=0); else args+=(-max_total_time="$secs"); fi
  cargo fuzz run "${flags[@]}" "$t" "corpus/$t" "seeds/$t" -- "${args[@]}" >"$logs/$t.log" 2>&1
}

declare -A pid_of=()
failed=()
reap() {
  # Wait for one running target; record it if it failed.
  local done_pid t
  wait -n -p done_pid || true
  for t in "${!pid_of[@]}"; do
    if [ "${pid_of[$t]}" = "$done_pid" ]; then
      wait "$done_pid" || failed+=("$t")
      unset "pid_of[$t]"
    fi
  done
}

for t in $targets; do
  while [ "${#pid_of[@]}" -ge "$jobs" ]; do reap; done
  echo "fuzzing $t for ${secs}s"
  run_target "$t" &
  pid_of[$t]=$!
done
while [ "${#pid_of[@]}" -gt 0 ]; do reap; done

printf '\n%-18s %12s %10s %8s  %s\n' target executions exec/s corpus result
for t in $targets; do
  log="$logs/$t.log"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "corpus/$t" -type f | wc -l)
  result=ok
  for f in "${failed[@]}"; do [ "$f" = "$t" ] && result=FAILED; done
  printf '%-18s %12s %10s %8s  %s\n' "$t" "${runs:-?}" "${rate:-?}" "$corpus" "$result"
done
echo "total $(($(date +%s) - started)) s"

if [ "${#failed[@]}" -gt 0 ]; then
  for t in "${failed[@]}"; do
    printf '\n==> %s failed; end of fuzz/%s:\n' "$t" "$logs/$t.log"
    tail -n 60 "$logs/$t.log"
    ls -l "artifacts/$t" 2>/dev/null || true
  done
  exit 1
fi
