#!/usr/bin/env bash
# System tools the test suite needs beyond Rust and Python, installed when missing (CI setup; run
# as root or with sudo). Tests never install anything themselves: they fail with a message that
# names this script.
#
#   systemd-analyze  (package systemd)                 tests/packaging.rs verifies the unit files
#   dpkg-deb         (package dpkg)                    tests/packaging.rs lists the .deb
#   lintian          (package lintian)                 tests/packaging.rs lints the .deb
#   man              (package man-db)                  tests/conventions.rs renders the man page; lintian checks it
#   promtool         (package prometheus)              tests/packaging: `promtool test rules`
#   amtool           (package prometheus-alertmanager) tests/packaging: `amtool check-config`
#   debootstrap      (package debootstrap)             scripts/debian-root.sh builds the Debian 12 root
#   systemd-nspawn   (package systemd-container)       tests/deploy boots that root
#   ip               (package iproute2)                scripts/test.sh: loopback up in the deployment
#                                                      test's private network namespace
#   cargo-deb        (cargo install)                   scripts/package-deb.sh builds the .deb
set -euo pipefail

if ! cargo deb --version >/dev/null 2>&1; then
    echo "ci-deps.sh: installing cargo-deb" >&2
    cargo install cargo-deb --locked >&2
fi

# command → Debian package
tools=(
    systemd-analyze:systemd
    dpkg-deb:dpkg
    lintian:lintian
    man:man-db
    promtool:prometheus
    amtool:prometheus-alertmanager
    debootstrap:debootstrap
    systemd-nspawn:systemd-container
    ip:iproute2
)
need=()
for entry in "${tools[@]}"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || need+=("${entry#*:}")
done

if ((${#need[@]} == 0)); then
    echo "ci-deps.sh: every tool is present" >&2
    exit 0
fi

sudo=()
if [[ "$(id -u)" != 0 ]]; then
    sudo=(sudo -n)
fi
echo "ci-deps.sh: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >&2
# --no-install-recommends: the tools only, not a running init system or monitoring stack.
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
