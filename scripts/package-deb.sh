#!/usr/bin/env bash
# Builds the Debian package of patrol (binary, systemd units, /etc/patrol/config.toml, examples)
# with cargo-deb, installing cargo-deb first if it is missing.
#
#   PATROL_DEB_OUT      where the .deb goes (default: target/debian)
#   PATROL_DEB_PROFILE  cargo profile to build (default: release; tests use "dev" to reuse the
#                       debug build)
#   PATROL_DEB_NO_BUILD set to 1 to package the binary already built for that profile (tests: the
#                       `cargo test` that runs them has just built it, and holds cargo's lock)
#   PATROL_DEB_VERSION  the package version (default: Cargo.toml's version, revision 1); the
#                       deployment test builds a higher one to test an upgrade
#
# Prints the path of the .deb on stdout (last line); progress goes to stderr.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"
out="${PATROL_DEB_OUT:-${repo_root}/target/debian}"
profile="${PATROL_DEB_PROFILE:-release}"

if ! cargo deb --version >/dev/null 2>&1; then
    echo "package-deb.sh: installing cargo-deb (cargo install cargo-deb --locked)" >&2
    cargo install cargo-deb --locked >&2
fi

mkdir -p "${out}"
args=(--output "${out}" --profile "${profile}")
if [[ "${PATROL_DEB_NO_BUILD:-0}" == 1 ]]; then
    args+=(--no-build)
fi
if [[ -n "${PATROL_DEB_VERSION:-}" ]]; then
    args+=(--deb-version "${PATROL_DEB_VERSION}")
fi
if [[ "${profile}" != "release" ]]; then
    # A test package: compress fast (cargo-deb strips the debug binary's copy: ~33 MB).
    args+=(--fast)
fi
echo "package-deb.sh: cargo deb ${args[*]}" >&2
deb="$(cargo deb "${args[@]}" 2> >(cat >&2) | tail -n 1)"
if [[ ! -f "${deb}" ]]; then
    echo "package-deb.sh: ERROR: cargo deb did not report a .deb (got: ${deb:-nothing})" >&2
    exit 1
fi
echo "${deb}"
