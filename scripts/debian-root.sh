#!/usr/bin/env bash
# Builds (once) the Debian 12 root that the real-systemd deployment test boots with
# `systemd-nspawn -b`, and prints its path on stdout (last line). Progress goes to stderr.
#
# The root is cached outside the clone, so a CI run in a fresh clone reuses it:
#   PATROL_DEBIAN_ROOT_CACHE  cache directory (default: ${XDG_CACHE_HOME:-~/.cache}/patrol)
#   PATROL_DEBIAN_MIRROR      Debian mirror (default: the host's deb.debian.org entry)
# It is rebuilt only when missing or when the package list below changes (the key in its name).
# Building needs Debian's package registry once (~3 minutes); the test itself runs offline.
#
# What the root holds, and why:
#   systemd systemd-sysv dbus      systemd 252 as PID 1, the version Debian 12 ships
#   procps                         /bin/kill, which patrol.service's ExecReload calls (a dependency
#                                  of the .deb; minbase lacks it, so a missing Depends shows)
#   ca-certificates libc6 ...      the .deb's own dependencies (dpkg -i runs offline in the test)
#   cron                           the packaged cron example is driven as cron would run it
#   curl iproute2                  the test reads /readyz, /metrics and node_exporter's page
#   man-db                         `man patrol` on the installed page
# prometheus-node-exporter and its dependencies are downloaded into /var/cache/apt/archives but
# not installed, and apt's package lists are kept: the test runs the timer without it first, then
# installs it offline with the `apt-get install` packaging/README.md gives (apt finds every .deb
# it needs in its cache and downloads nothing).
set -euo pipefail

die() { echo "debian-root.sh: ERROR: $*" >&2; exit 1; }
log() { echo "debian-root.sh: $*" >&2; }

INCLUDE="systemd,systemd-sysv,dbus,iproute2,procps,ca-certificates,curl,cron,man-db,init-system-helpers"
CACHED_DEBS="prometheus-node-exporter"
KEY="$(printf '%s|%s|v2' "${INCLUDE}" "${CACHED_DEBS}" | sha256sum | cut -c1-12)"

cache="${PATROL_DEBIAN_ROOT_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/patrol}"
root="${cache}/debian12-${KEY}"
marker="${root}/.patrol-root-complete"

if [[ -f "${marker}" ]]; then
    echo "${root}"
    exit 0
fi

[[ "$(id -u)" == 0 ]] || die "building the Debian root needs root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap is missing: run scripts/ci-deps.sh"

mkdir -p "${cache}"
exec 9>"${root}.lock"
flock -w 1800 9 || die "timed out waiting for ${root}.lock"
if [[ -f "${marker}" ]]; then
    echo "${root}"
    exit 0
fi

mirror="${PATROL_DEBIAN_MIRROR:-}"
if [[ -z "${mirror}" ]]; then
    mirror="$(grep -hoE 'https?://deb\.debian\.org/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | head -n1 || true)"
    mirror="${mirror:-http://deb.debian.org/debian}"
fi

started=$(date +%s)
tmp="${root}.building"
rm -rf "${tmp}"
log "debootstrap bookworm into ${tmp} from ${mirror} (once; ~3 minutes)"
debootstrap --variant=minbase --include="${INCLUDE}" bookworm "${tmp}" "${mirror}" >&2 \
    || die "debootstrap failed (see above)"

# Offline packages for the test: downloaded now, installed by the test with dpkg -i.
log "downloading ${CACHED_DEBS} (not installed) into the root's apt cache"
printf 'deb %s bookworm main\n' "${mirror}" >"${tmp}/etc/apt/sources.list"
cp /etc/resolv.conf "${tmp}/etc/resolv.conf"
mount --bind /proc "${tmp}/proc"
trap 'umount "${tmp}/proc" 2>/dev/null || true' EXIT
chroot "${tmp}" /bin/sh -c "apt-get update -qq && apt-get install -y -qq --download-only --no-install-recommends ${CACHED_DEBS}" >&2 \
    || die "downloading ${CACHED_DEBS} failed"
umount "${tmp}/proc"
trap - EXIT
: >"${tmp}/etc/resolv.conf"

# The container's identity and a quiet boot: no getty on a console nobody reads.
echo patrol-test >"${tmp}/etc/hostname"
rm -f "${tmp}/etc/machine-id"
systemd-machine-id-setup --root="${tmp}" >/dev/null 2>&1 || true
chroot "${tmp}" systemctl mask console-getty.service getty@tty1.service systemd-timesyncd.service >/dev/null 2>&1 || true

touch "${tmp}/.patrol-root-complete"
rm -rf "${root}"
mv "${tmp}" "${root}"
log "root ready in $(( $(date +%s) - started )) s: ${root}"
echo "${root}"
