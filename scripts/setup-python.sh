#!/usr/bin/env bash
# Creates (idempotently) the Python venv used by patrol's wire-compatibility tests:
# the REAL `bittensor==10.3.1` (the version gittensor pins).
#
#   PATROL_PY_VENV   venv directory (default: <repo>/target/py-venv)
#   PATROL_PYTHON    base interpreter (default: python3.11, then python3)
#   PIP_FIND_LINKS   honoured by pip as usual (local wheel cache)
#
# Prints the absolute path of the venv's python on stdout (last line); all progress goes to stderr.
# Exits non-zero with a clear message on any failure. Needs no stdin; safe with CI=true.
set -euo pipefail

BITTENSOR_VERSION="10.3.1"
MARKER_CONTENT="bittensor==${BITTENSOR_VERSION} v1"

die() {
    echo "setup-python.sh: ERROR: $*" >&2
    exit 1
}
log() { echo "setup-python.sh: $*" >&2; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${PATROL_PY_VENV:-${repo_root}/target/py-venv}"
marker="${venv}/.patrol-setup-complete"
py="${venv}/bin/python"

if [[ -f "${marker}" && -x "${py}" && "$(cat "${marker}")" == "${MARKER_CONTENT}" ]]; then
    echo "${py}"
    exit 0
fi

# Serialize concurrent setups (e.g. several test binaries at once).
mkdir -p "$(dirname "${venv}")"
lockfile="${venv}.lock"
if command -v flock >/dev/null 2>&1; then
    exec 9>"${lockfile}"
    flock -w 1800 9 || die "timed out waiting for lock ${lockfile}"
    # Another process may have finished while we waited.
    if [[ -f "${marker}" && -x "${py}" && "$(cat "${marker}")" == "${MARKER_CONTENT}" ]]; then
        echo "${py}"
        exit 0
    fi
fi

base="${PATROL_PYTHON:-}"
if [[ -z "${base}" ]]; then
    for cand in python3.11 python3; do
        if command -v "${cand}" >/dev/null 2>&1; then
            base="$(command -v "${cand}")"
            break
        fi
    done
fi
[[ -n "${base}" ]] || die "no python3 interpreter found (set PATROL_PYTHON)"
command -v "${base}" >/dev/null 2>&1 || die "python interpreter ${base} not found"
"${base}" -c 'import sys; assert sys.version_info >= (3, 9), sys.version' \
    || die "${base} does not run or is too old; bittensor ${BITTENSOR_VERSION} needs Python >= 3.9"

started=$(date +%s)
if [[ -e "${venv}" ]]; then
    # Only ever delete something that is recognisably a (half-made) venv of ours, or empty.
    if [[ -f "${venv}/pyvenv.cfg" ]] || [[ -d "${venv}" && -z "$(ls -A "${venv}")" ]]; then
        log "removing incomplete venv at ${venv}"
        rm -rf "${venv}"
    else
        die "${venv} exists and is not a venv; refusing to delete it (set PATROL_PY_VENV elsewhere)"
    fi
fi
log "creating venv at ${venv} with ${base}"
"${base}" -m venv "${venv}" || die "python -m venv failed (on Debian: apt-get install python3-venv)"
[[ -x "${py}" ]] || die "venv has no ${py}"

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-180}"
log "installing bittensor==${BITTENSOR_VERSION} (this takes a few minutes the first time)"
if ! "${py}" -m pip install --quiet --no-input "bittensor==${BITTENSOR_VERSION}" >&2; then
    die "pip install bittensor==${BITTENSOR_VERSION} failed (see pip output above)"
fi

# Smoke check: the 10.x SDK (Axon/Dendrite/Synapse) imports and has the right version.
if ! "${py}" - "${BITTENSOR_VERSION}" >&2 <<'PY'
import sys
import importlib.metadata as md
want = sys.argv[1]
got = md.version("bittensor")
assert got == want, f"bittensor {got} installed, want {want}"
import bittensor as bt
for name in ("Axon", "Dendrite", "Synapse"):
    assert hasattr(bt, name), f"bittensor has no {name}"
print(f"bittensor {got}, bittensor-wallet {md.version('bittensor-wallet')}, python {sys.version.split()[0]}")
PY
then
    die "the installed bittensor does not import correctly"
fi

echo "${MARKER_CONTENT}" >"${marker}.tmp"
mv "${marker}.tmp" "${marker}"
log "venv ready in $(( $(date +%s) - started )) s"
echo "${py}"
