#!/usr/bin/env bash
# Runs a command (scripts/test.sh runs the test suite with it) with the `shared` directory beside
# the clone hidden, to prove the suite never reads the data CI lays there: the tests' data is in
# tests/data/.
#
# When that directory exists, the command runs in a private mount namespace where an empty read-only
# tmpfs covers it, so any test that still opens a path under it fails (a missing file, not a
# skipped test). Without it there is nothing to hide and the command runs as it is. Hiding
# needs root (mount); as another user the command runs unchanged with a warning, and the static
# check in tests/conventions.rs (no file names that directory) still holds.
set -euo pipefail
cd "$(dirname "$0")/.."

if (($# == 0)); then
    echo "usage: scripts/without-shared.sh COMMAND [ARG...]" >&2
    exit 64
fi
shared="$(cd .. && pwd)/shared"
if [[ ! -e "${shared}" ]]; then
    exec "$@"
fi
if [[ "$(id -u)" != 0 ]] || ! command -v unshare >/dev/null 2>&1; then
    echo "without-shared.sh: WARNING: cannot hide ${shared} (needs root and unshare); running unchanged" >&2
    exec "$@"
fi
echo "without-shared.sh: ${shared} hidden behind an empty tmpfs for: $*" >&2
# The mount is private to the new namespace: nothing outside it (other users of that directory) sees it.
exec unshare --mount --propagation private -- sh -c '
    mount -t tmpfs -o ro,mode=0555,size=4k patrol-hides-shared "$1" || exit 70
    if [ -n "$(ls -A "$1")" ]; then echo "without-shared.sh: $1 is still visible" >&2; exit 70; fi
    shift
    exec "$@"
' without-shared "${shared}" "$@"
