"""Shared helpers for patrol's Python wire-compatibility harness (real ``bittensor==10.3.1``).

Importing this module, BEFORE anything else from bittensor:

* keeps stdout clean: ``sys.stdout`` is pointed at stderr (bittensor's console logging goes there too);
  scripts write their machine-readable output to :data:`REAL_STDOUT` only;
* sets ``READ_ONLY=1`` so that ``import bittensor`` does not create ``~/.bittensor/{wallets,miners}``;
* installs a loopback guard: any ``connect()`` to a non-loopback IP address and any name lookup of
  something other than a loopback literal / ``localhost`` raises ``OSError`` (nothing may leave the machine);
* replaces ``bittensor.utils.networking.get_external_ip`` (the only definition; ``bittensor.core.axon`` and
  ``bittensor.core.dendrite`` call it through the module attribute ``networking.get_external_ip``, and the
  serving extrinsics through ``net.get_external_ip`` = the same module) with a function returning the
  documentation address ``192.0.2.1``: ``bt.Dendrite()``/``bt.Axon()`` would otherwise ask public
  "what is my IP" services.

It also defines gittensor's synapse classes (exact names and fields: the class name is the URL path) and
key/wallet helpers that never read or write ``~/.bittensor``.
"""

import hashlib
import ipaddress
import json
import os
import socket
import sys
import tempfile
import time
from typing import Optional

# ---------------------------------------------------------------------------------------------
# stdout hygiene: only our JSON goes to the real stdout.
REAL_STDOUT = sys.stdout
sys.stdout = sys.stderr

# Do not let `import bittensor` create ~/.bittensor/... (bittensor/core/settings.py honours READ_ONLY=1).
os.environ.setdefault("READ_ONLY", "1")
# Belt and braces against any proxy settings in the environment.
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_var, None)

FAKE_EXTERNAL_IP = "192.0.2.1"  # RFC 5737 TEST-NET-1: never routed, never contacted.
LOOPBACK = "127.0.0.1"


# ---------------------------------------------------------------------------------------------
# Loopback guard (installed at import time).
class NonLoopbackError(OSError):
    pass


def _is_loopback_host(host) -> bool:
    if host is None:
        return True  # getaddrinfo(None, port) = wildcard/loopback for binding
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]")
    if host.lower() in ("localhost", "localhost.localdomain", ""):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_loopback


def _check_address(address) -> None:
    if isinstance(address, tuple) and address:
        if not _is_loopback_host(address[0]):
            msg = f"patrol test harness: refusing non-loopback connection to {address!r}"
            print(msg, file=sys.stderr, flush=True)
            raise NonLoopbackError(msg)


_orig_connect = socket.socket.connect
_orig_connect_ex = socket.socket.connect_ex
_orig_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check_address(address)
    return _orig_connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check_address(address)
    return _orig_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_loopback_host(host):
        msg = f"patrol test harness: refusing name lookup of {host!r} (loopback only)"
        print(msg, file=sys.stderr, flush=True)
        raise socket.gaierror(socket.EAI_NONAME, msg)
    return _orig_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo

# ---------------------------------------------------------------------------------------------
# bittensor, with get_external_ip stubbed before any Dendrite/Axon exists.
import bittensor as bt  # noqa: E402
import bittensor.utils.networking as _networking  # noqa: E402
from bittensor_wallet import Keypair  # noqa: E402


def _fake_get_external_ip() -> str:
    return FAKE_EXTERNAL_IP


def install_loopback_stubs() -> None:
    """Replace every module-level reference to ``get_external_ip`` (idempotent)."""
    _networking.get_external_ip = _fake_get_external_ip
    for name in list(sys.modules):
        if not name.startswith("bittensor"):
            continue
        mod = sys.modules.get(name)
        if mod is not None and getattr(mod, "get_external_ip", None) is not None:
            if mod.get_external_ip is not _fake_get_external_ip:
                mod.get_external_ip = _fake_get_external_ip


install_loopback_stubs()

# ---------------------------------------------------------------------------------------------
# gittensor's synapses (entrius/gittensor:gittensor/synapses.py). The class name is the URL path.


class PatBroadcastSynapse(bt.Synapse):
    github_access_token: str
    accepted: Optional[bool] = None
    rejection_reason: Optional[str] = None


class PatCheckSynapse(bt.Synapse):
    has_pat: Optional[bool] = None
    pat_valid: Optional[bool] = None
    rejection_reason: Optional[str] = None


SYNAPSES = {
    "check": PatCheckSynapse,
    "broadcast": PatBroadcastSynapse,
    "PatCheckSynapse": PatCheckSynapse,
    "PatBroadcastSynapse": PatBroadcastSynapse,
}

# ---------------------------------------------------------------------------------------------
# Keys and wallets (never touching ~/.bittensor).


def _hex_bytes(value: str) -> bytes:
    value = value.strip()
    if value.startswith(("0x", "0X")):
        value = value[2:]
    return bytes.fromhex(value)


def keypair_from_seed(seed_hex: str) -> Keypair:
    """sr25519 keypair from a 32-byte mini secret given as (0x-)hex."""
    seed = _hex_bytes(seed_hex)
    if len(seed) != 32:
        raise ValueError(f"seed must be 32 bytes, got {len(seed)}")
    return Keypair.create_from_seed("0x" + seed.hex())


def keypair_from_mnemonic(mnemonic: str) -> Keypair:
    return Keypair.create_from_mnemonic(mnemonic.strip())


def keypair_from_hotkey_file(path: str) -> Keypair:
    """Load a bittensor hotkey file with the real library's loader.

    The library fails on files whose ``secretSeed`` was written as raw bytes (wire doc §12 item 14);
    for those we fall back to ``privateKey`` (64-byte expanded key), which the library writes correctly.
    Encrypted files are refused.
    """
    from bittensor_wallet.keyfile import deserialize_keypair_from_keyfile_data

    with open(path, "rb") as fh:
        data = fh.read()
    if data.startswith((b"$NACL", b"$ANSIBLE_VAULT", b"gAAAAA")):
        raise ValueError(f"{path}: encrypted hotkey files are not supported by the test harness")
    try:
        return deserialize_keypair_from_keyfile_data(data)
    except Exception as exc:  # noqa: BLE001 - library raises various error types
        try:
            obj = json.loads(data)
            private_key = obj["privateKey"]
        except Exception:
            raise ValueError(f"{path}: cannot load hotkey file: {exc}") from exc
        print(f"bt_common: library loader failed on {path} ({exc}); using privateKey", file=sys.stderr)
        return Keypair.create_from_private_key(private_key)


def load_keypair(seed: Optional[str] = None, hotkey_file: Optional[str] = None,
                 mnemonic: Optional[str] = None) -> Keypair:
    given = [x for x in (seed, hotkey_file, mnemonic) if x]
    if len(given) != 1:
        raise ValueError("exactly one of seed, hotkey_file or mnemonic is required")
    if seed:
        return keypair_from_seed(seed)
    if hotkey_file:
        return keypair_from_hotkey_file(hotkey_file)
    return keypair_from_mnemonic(mnemonic)


class LocalWallet:
    """The parts of ``bittensor_wallet.Wallet`` that ``bt.Axon``/``bt.Dendrite`` use, held in memory only."""

    def __init__(self, hotkey: Keypair, coldkeypub: Optional[Keypair] = None, name: str = "patrol-test"):
        self.name = name
        self.hotkey_str = "default"
        self.path = "<memory>"
        self.hotkey = hotkey
        self.coldkeypub = coldkeypub or Keypair(ss58_address=hotkey.ss58_address)

    @property
    def coldkey(self):
        raise RuntimeError("LocalWallet has no coldkey secret")

    def __repr__(self) -> str:
        return f"LocalWallet(hotkey={self.hotkey.ss58_address})"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def atomic_write_json(path: str, value, mode: int = 0o600, indent: Optional[int] = None) -> None:
    """Write JSON to ``path`` atomically (temp file in the same directory + rename), with ``mode``."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(value, fh, indent=indent)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def start_axon(axon, who: str, within: float = 30.0) -> bool:
    """``axon.start()``, then wait until its uvicorn server serves, at most ``within`` seconds;
    False (and a line on stderr naming ``who``) when it does not."""
    axon.start()
    deadline = time.monotonic() + within
    while not axon.fast_server.started:
        if time.monotonic() > deadline:
            print(f"{who}: uvicorn did not start within {within:.0f} s", file=sys.stderr)
            return False
        time.sleep(0.01)
    return True


def emit(value) -> None:
    """One JSON line on the real stdout, flushed."""
    REAL_STDOUT.write(json.dumps(value) + "\n")
    REAL_STDOUT.flush()
