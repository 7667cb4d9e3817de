#!/usr/bin/env bash
# System tools the test suite needs beyond Rust and Python, installed when missing (CI setup; run
# as root or with sudo). Tests never install anything themselves: they fail with a message that
# names this script.
#
#   systemd-analyze  (package systemd)  tests/packaging.rs verifies the unit files
#   dpkg-deb         (package dpkg)     tests/packaging.rs lists the .deb
#   lintian          (package lintian)  tests/conventions.rs checks the .deb's man page
#   man              (package man-db)   tests/conventions.rs renders the man page
#   cargo-deb        (cargo install)    scripts/package-deb.sh builds the .deb
set -euo pipefail

if ! cargo deb --version >/dev/null 2>&1; then
    echo "ci-deps.sh: installing cargo-deb" >&2
    cargo install cargo-deb --locked >&2
fi

need=()
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
command -v lintian >/dev/null 2>&1 || need+=(lintian)
command -v man >/dev/null 2>&1 || need+=(man-db)

if ((${#need[@]} == 0)); then
    echo "ci-deps.sh: systemd-analyze, dpkg-deb, lintian and man present" >&2
    exit 0
fi

sudo=()
if [[ "$(id -u)" != 0 ]]; then
    sudo=(sudo -n)
fi
echo "ci-deps.sh: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >&2
# --no-install-recommends: the tools only, not a running init system.
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
