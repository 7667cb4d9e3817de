#!/usr/bin/env python3
"""A real ``bt.Axon`` (bittensor 10.3.1) on 127.0.0.1 serving gittensor's two PAT synapses.

Usage:  bt_axon.py CONFIG.json [--exit-on-stdin-eof]

See README.md in this directory for the config schema. The config file is re-read on every request
(so a test can change the behaviour while the axon runs: write it atomically, temp file + rename).

After binding, prints exactly one JSON line on stdout:
    {"ready": true, "port": N, "hotkey": "<ss58>", "pid": P, "ip": "127.0.0.1", "uuid": "<axon.uuid>"}
Exits 0 on SIGTERM/SIGINT (or stdin EOF with --exit-on-stdin-eof).
"""

import asyncio
import functools
import hashlib
import inspect
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from typing import Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bt_common  # noqa: E402  (must come before any other bittensor use)
from bt_common import PatBroadcastSynapse, PatCheckSynapse, atomic_write_json, bt, emit  # noqa: E402

import uvicorn  # noqa: E402
from bittensor.core.axon import FastAPIThreadedServer  # noqa: E402

# gittensor's texts (gittensor-pat-semantics.md §2.1-2.3).
REASON_NO_PAT = "No PAT stored for this miner"
REASON_STORE_UNAVAILABLE_CHECK = "Validator PAT store temporarily unavailable; please retry."
REASON_INCONCLUSIVE = "GitHub API temporarily unavailable; retry the check in a few minutes."
REASON_INVALID_PAT = "No Github id found for miner {uid}'s PAT"
REASON_TEST_FAILED = "PAT test query failed: {detail}"
REASON_NOT_REGISTERED = "Hotkey not registered on subnet"
REASON_EMPTY_PAT = "No Github PAT provided by miner {uid}"


class HandlerError(RuntimeError):
    """Raised by the `raise` mode: the real axon turns it into HTTP 500."""


class State:
    """Config (reloaded on change), scripted queues, PAT store and request log. Thread-safe."""

    def __init__(self, config_path: str):
        self.config_path = os.path.abspath(config_path)
        self.base_dir = os.path.dirname(self.config_path)
        self.lock = threading.RLock()
        self.raw = None
        self.config = {}
        self.queue_pos = {"check": 0, "broadcast": 0}
        self.requests = []
        self.blacklisted = []
        # forward-function calls by synapse name, the SDK's built-in `ping` (Synapse) included
        self.handler_calls = {}
        self.seq = 0
        self.store = []  # gittensor format: [{uid, hotkey, pat, github_id, stored_at}]
        self.reload()
        self.log_path = self._path("log_path", "received.json")
        self.store_path = self._path("store_path", "miner_pats.json")
        if os.path.exists(self.store_path):
            with open(self.store_path, encoding="utf-8") as fh:
                self.store = json.load(fh)
        self.write_log()

    def _path(self, key: str, default: str) -> str:
        p = self.config.get(key) or default
        return p if os.path.isabs(p) else os.path.join(self.base_dir, p)

    def reload(self) -> dict:
        """Re-read the config file; a changed file resets the scripted queues."""
        with self.lock:
            try:
                with open(self.config_path, "rb") as fh:
                    raw = fh.read()
                config = json.loads(raw)
            except (OSError, ValueError) as exc:
                if self.raw is None:
                    raise
                print(f"bt_axon: keeping previous config, cannot read {self.config_path}: {exc}", file=sys.stderr)
                return self.config
            if raw != self.raw:
                # A scripted queue restarts when its list or the config's `queue_id` changes.
                old_q, new_q = self.config.get("queue") or {}, config.get("queue") or {}
                new_id = self.config.get("queue_id") != config.get("queue_id")
                for kind in self.queue_pos:
                    if new_id or old_q.get(kind) != new_q.get(kind):
                        self.queue_pos[kind] = 0
                self.raw = raw
                self.config = config
            return self.config

    # --- registration / stake -----------------------------------------------------------------
    def registered(self) -> list:
        """[(ss58, stake)] in uid order."""
        reg = self.config.get("registered", [])
        if isinstance(reg, dict):
            return [(k, float(v)) for k, v in reg.items()]
        out = []
        for item in reg:
            if isinstance(item, str):
                out.append((item, 0.0))
            else:
                out.append((item["hotkey"], float(item.get("stake", 0.0))))
        return out

    def uid_of(self, hotkey) -> int:
        for uid, (hk, _stake) in enumerate(self.registered()):
            if hk == hotkey:
                return uid
        return -1

    def stake_of(self, hotkey) -> float:
        for hk, stake in self.registered():
            if hk == hotkey:
                return stake
        return 0.0

    # --- behaviour ----------------------------------------------------------------------------
    def next_mode(self, kind: str, hotkey: str):
        """Scripted queue first (one entry per request), then per-hotkey override, then default."""
        cfg = self.config
        queue = (cfg.get("queue") or {}).get(kind) or []
        pos = self.queue_pos[kind]
        if pos < len(queue):
            self.queue_pos[kind] = pos + 1
            return queue[pos]
        per = (cfg.get("per_hotkey") or {}).get(hotkey) or {}
        if kind in per:
            return per[kind]
        return cfg.get(kind, "store" if kind == "check" else "accept")

    # --- store --------------------------------------------------------------------------------
    def entry_for_uid(self, uid: int):
        for e in self.store:
            if e.get("uid") == uid:
                return e
        return None

    def save_pat(self, uid: int, hotkey: str, pat: str, github_id: str) -> None:
        entry = {
            "uid": uid,
            "hotkey": hotkey,
            "pat": pat,
            "github_id": github_id,
            "stored_at": datetime.now(timezone.utc).isoformat(),
        }
        self.store = [e for e in self.store if e.get("uid") != uid] + [entry]
        self.store.sort(key=lambda e: e.get("uid", 0))
        atomic_write_json(self.store_path, self.store, indent=2)

    # --- log ----------------------------------------------------------------------------------
    def write_log(self) -> None:
        atomic_write_json(
            self.log_path,
            {
                "requests": self.requests,
                "blacklisted": self.blacklisted,
                "store_size": len(self.store),
                "handler_calls": self.handler_calls,
            },
        )

    def record(self, rec: dict) -> dict:
        self.seq += 1
        rec = {"seq": self.seq, "time": time.time(), **rec}
        self.requests.append(rec)
        self.write_log()
        return rec


STATE: State = None  # set in main()


def _split_mode(mode):
    """'sleep:2.5:valid' -> ('sleep', '2.5:valid'); dicts are returned as-is."""
    if isinstance(mode, dict):
        return "object", mode
    mode = str(mode)
    name, _, arg = mode.partition(":")
    return name, arg


async def _apply_sleep(arg: str, default_next: str):
    secs, _, rest = arg.partition(":")
    await asyncio.sleep(float(secs))
    return rest or default_next


def _base_record(synapse, kind: str, mode) -> dict:
    hotkey = synapse.dendrite.hotkey if synapse.dendrite is not None else None
    return {
        "synapse": type(synapse).__name__,
        "kind": kind,
        "hotkey": hotkey,
        "uid": STATE.uid_of(hotkey),
        "mode": mode,
        "timeout": synapse.timeout,
        "dendrite_nonce": synapse.dendrite.nonce if synapse.dendrite is not None else None,
        "dendrite_uuid": synapse.dendrite.uuid if synapse.dendrite is not None else None,
    }


# --- gittensor-like handlers --------------------------------------------------------------------


async def _scripted_mode(kind: str, hotkey: str, after_sleep: str):
    """The next scripted mode of ``kind`` for ``hotkey``, a ``sleep:<s>[:mode]`` slept first:
    (mode, name, arg)."""
    with STATE.lock:
        STATE.reload()
        mode = STATE.next_mode(kind, hotkey)
    name, arg = _split_mode(mode)
    if name == "sleep":
        mode = await _apply_sleep(arg, after_sleep)
        name, arg = _split_mode(mode)
    return mode, name, arg


async def forward_check(synapse: PatCheckSynapse) -> PatCheckSynapse:
    hotkey = synapse.dendrite.hotkey
    mode, name, arg = await _scripted_mode("check", hotkey, "store")
    with STATE.lock:
        uid = STATE.uid_of(hotkey)
        rec = _base_record(synapse, "check", mode)
        if name == "raise":
            STATE.record({**rec, "outcome": "raise"})
            raise HandlerError("scripted PatCheckSynapse handler failure")
        if name == "store":
            entry = STATE.entry_for_uid(uid)
            if entry is None or entry.get("hotkey") != hotkey:
                name = "no_pat"
            else:
                name = "valid"
        if name == "valid":
            out = (True, True, None)
        elif name == "no_pat":
            out = (False, False, REASON_NO_PAT)
        elif name == "invalid_pat":
            out = (True, False, arg or REASON_INVALID_PAT.format(uid=uid))
        elif name == "test_failed":
            out = (True, False, REASON_TEST_FAILED.format(detail=arg or "HTTP 401"))
        elif name == "inconclusive":
            out = (True, None, REASON_INCONCLUSIVE)
        elif name == "store_unavailable":
            out = (False, None, REASON_STORE_UNAVAILABLE_CHECK)
        elif name == "object":
            out = (arg.get("has_pat"), arg.get("pat_valid"), arg.get("rejection_reason"))
        else:
            STATE.record({**rec, "outcome": f"unknown mode {mode!r}"})
            raise HandlerError(f"unknown PatCheckSynapse mode {mode!r}")
        synapse.has_pat, synapse.pat_valid, synapse.rejection_reason = out
        STATE.record({**rec, "outcome": name, "has_pat": out[0], "pat_valid": out[1], "rejection_reason": out[2]})
    return synapse


async def forward_broadcast(synapse: PatBroadcastSynapse) -> PatBroadcastSynapse:
    token = synapse.github_access_token or ""
    hotkey = synapse.dendrite.hotkey
    mode, name, arg = await _scripted_mode("broadcast", hotkey, "accept")
    with STATE.lock:
        uid = STATE.uid_of(hotkey)
        rec = {
            **_base_record(synapse, "broadcast", mode),
            "token_sha256": hashlib.sha256(token.encode("utf-8")).hexdigest(),
            "token_len": len(token),
        }
        # gittensor: every outcome clears the token so it is never echoed back.
        synapse.github_access_token = ""
        if name == "raise":
            STATE.record({**rec, "outcome": "raise"})
            raise HandlerError("scripted PatBroadcastSynapse handler failure")
        if name == "accept":
            if uid < 0:
                accepted, reason = False, REASON_NOT_REGISTERED
            elif not token:
                accepted, reason = False, REASON_EMPTY_PAT.format(uid=uid)
            else:
                github_id = str(arg or STATE.config.get("github_id", "0"))
                STATE.save_pat(uid, hotkey, token, github_id)
                accepted, reason = True, None
        elif name == "reject":
            accepted, reason = False, (arg or "rejected").replace("{uid}", str(uid))
        elif name == "object":
            accepted, reason = arg.get("accepted"), arg.get("rejection_reason")
        else:
            STATE.record({**rec, "outcome": f"unknown mode {mode!r}"})
            raise HandlerError(f"unknown PatBroadcastSynapse mode {mode!r}")
        synapse.accepted, synapse.rejection_reason = accepted, reason
        STATE.record({**rec, "outcome": name, "accepted": accepted, "rejection_reason": reason})
    return synapse


# blacklist/priority: signatures must match exactly what bt.Axon.attach asserts (typing.Tuple).
def _blacklist(synapse) -> Tuple[bool, str]:
    with STATE.lock:
        STATE.reload()
        hotkey = synapse.dendrite.hotkey
        if STATE.uid_of(hotkey) < 0:
            reason = f"Hotkey {str(hotkey)[:16]}... not registered"
            STATE.blacklisted.append(
                {"time": time.time(), "synapse": type(synapse).__name__, "hotkey": hotkey, "reason": reason}
            )
            STATE.write_log()
            return True, reason
        return False, "Hotkey recognized"


def blacklist_check(synapse: PatCheckSynapse) -> Tuple[bool, str]:
    return _blacklist(synapse)


def blacklist_broadcast(synapse: PatBroadcastSynapse) -> Tuple[bool, str]:
    return _blacklist(synapse)


def priority_check(synapse: PatCheckSynapse) -> float:
    with STATE.lock:
        return STATE.stake_of(synapse.dendrite.hotkey)


def priority_broadcast(synapse: PatBroadcastSynapse) -> float:
    with STATE.lock:
        return STATE.stake_of(synapse.dendrite.hotkey)


def _count_handler_calls() -> None:
    """Wrap every forward function ``bt.Axon.attach`` registers (the built-in ``ping`` of
    ``Axon.__init__`` too) so each call is counted in ``handler_calls`` before it runs. The wrapper
    keeps the function's signature (``functools.wraps``), which is all ``attach`` inspects."""
    original = bt.Axon.attach

    def attach(self, forward_fn, **kwargs):
        name = list(inspect.signature(forward_fn).parameters.values())[0].annotation.__name__

        @functools.wraps(forward_fn)
        def counted(*args, **kw):
            with STATE.lock:
                STATE.handler_calls[name] = STATE.handler_calls.get(name, 0) + 1
                STATE.write_log()
            return forward_fn(*args, **kw)

        return original(self, forward_fn=counted, **kwargs)

    bt.Axon.attach = attach


class LoopbackServer(FastAPIThreadedServer):
    """bt's threaded uvicorn server, serving on a socket we bound to 127.0.0.1 ourselves."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket):
        super().__init__(config=config)
        self._sock = sock

    def run(self, sockets=None):
        return super().run(sockets=[self._sock])


def main(argv) -> int:
    global STATE
    args = [a for a in argv[1:] if not a.startswith("--")]
    flags = {a for a in argv[1:] if a.startswith("--")}
    if len(args) != 1 or not flags <= {"--exit-on-stdin-eof"}:
        print(__doc__, file=sys.stderr)
        return 2
    STATE = State(args[0])
    cfg = STATE.config

    keypair = bt_common.load_keypair(
        seed=cfg.get("hotkey_seed"), hotkey_file=cfg.get("hotkey_file"), mnemonic=cfg.get("hotkey_mnemonic")
    )
    wallet = bt_common.LocalWallet(keypair)

    # Bind 127.0.0.1 ourselves (port 0 -> kernel-chosen), so there is no race and never 0.0.0.0.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bt_common.LOOPBACK, int(cfg.get("port", 0))))
    sock.listen(128)
    port = sock.getsockname()[1]

    _count_handler_calls()
    axon = bt.Axon(
        wallet=wallet, port=port, ip=bt_common.LOOPBACK, external_ip=bt_common.LOOPBACK, external_port=port
    )
    # Replace the library's 0.0.0.0 uvicorn config/server before start().
    axon.fast_config = uvicorn.Config(
        axon.app, host=bt_common.LOOPBACK, port=port, log_level="critical", loop="none"
    )
    axon.fast_server = LoopbackServer(config=axon.fast_config, sock=sock)
    axon.attach(forward_fn=forward_check, blacklist_fn=blacklist_check, priority_fn=priority_check)
    axon.attach(forward_fn=forward_broadcast, blacklist_fn=blacklist_broadcast, priority_fn=priority_broadcast)

    stop = threading.Event()

    def _on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    if not bt_common.start_axon(axon, "bt_axon"):
        return 1

    if "--exit-on-stdin-eof" in flags:

        def _watch_stdin():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except Exception:  # noqa: BLE001
                pass
            stop.set()

        threading.Thread(target=_watch_stdin, daemon=True).start()

    emit(
        {
            "ready": True,
            "port": port,
            "hotkey": keypair.ss58_address,
            "pid": os.getpid(),
            "ip": bt_common.LOOPBACK,
            "uuid": axon.uuid,
        }
    )
    print(f"bt_axon: serving on {bt_common.LOOPBACK}:{port} as {keypair.ss58_address}", file=sys.stderr)

    while not stop.wait(0.2):
        pass
    axon.fast_server.should_exit = True
    axon.stop()
    print("bt_axon: stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)
