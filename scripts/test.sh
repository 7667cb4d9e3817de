#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run) and as the README tells a newcomer to run it.
# Installs what the tests need first: Debian tools (systemd-analyze, dpkg-deb), cargo-deb, and a
# Python venv with the real bittensor==10.3.1 (target/py-venv). Idempotent; no stdin needed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "system dependencies"
scripts/ci-deps.sh

step "python venv with bittensor==10.3.1"
scripts/setup-python.sh >/dev/null

step "format and lints"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

step "tests"
# One integration binary (tests/tests.rs) plus unit tests; the wire-compatibility tests start real
# Python bittensor processes on 127.0.0.1. The data the tests read is in tests/data/:
# without-shared.sh hides the `shared` directory CI lays beside the clone, so a test that still
# reads it fails.
scripts/without-shared.sh cargo test --locked --all-targets -- --test-threads "${PATROL_TEST_THREADS:-4}"

if [ -x scripts/fuzz-smoke.sh ]; then
  step "short fuzz run"
  scripts/fuzz-smoke.sh
fi
step "all tests passed"
