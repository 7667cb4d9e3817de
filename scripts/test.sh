#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run) and as the README tells a newcomer to run it.
# Installs what the tests need first: Debian tools (systemd-analyze, dpkg-deb, lintian, promtool,
# amtool, debootstrap, systemd-nspawn), cargo-deb, a Python venv with the real bittensor==10.3.1
# (target/py-venv), and a cached Debian 12 root for the deployment test, which boots a container
# and so needs root (CI runs this as root). Idempotent; no stdin needed.
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

step "deployment test: the .deb under a real systemd (Debian 12 booted in systemd-nspawn)"
# Its own step, after the others: one container boot, the steps of packaging/README.md in order.
# In a private network namespace with only loopback: the validators it starts on 127.0.0.1 are
# reachable from the container (which shares that namespace) and nothing leaves the machine.
if [[ "$(id -u)" != 0 ]]; then
    echo "test.sh: the deployment test boots a container and needs root; run scripts/test.sh as root (CI does)" >&2
    exit 1
fi
# The Debian 12 root: built once (debootstrap, Debian's registry, ~2 minutes), cached outside the
# clone ($XDG_CACHE_HOME/patrol) and reused by later runs and clones.
PATROL_DEBIAN_ROOT="$(scripts/debian-root.sh)"
export PATROL_DEBIAN_ROOT
cargo test --locked --test deploy --no-run
CARGO_NET_OFFLINE=true scripts/without-shared.sh unshare --net -- sh -c \
    'ip link set lo up && exec cargo test --locked --test deploy -- --ignored --test-threads 1 --nocapture'

if [ -x scripts/fuzz-smoke.sh ]; then
  step "short fuzz run"
  scripts/fuzz-smoke.sh
fi
step "all tests passed"
