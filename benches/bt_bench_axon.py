#!/usr/bin/env python3
"""A real ``bt.Axon`` (bittensor 10.3.1) with gittensor's PatCheckSynapse pipeline, for the throughput
benchmark (benches/axon_throughput.sh). The handlers do what gittensor's do on the path being
measured, and nothing more (tests/python/bt_axon.py records every request, which would dominate):

* blacklist: the caller's hotkey must be in the metagraph (``Hotkey ... not registered`` → 403);
* priority: the caller's stake;
* check: ``metagraph.hotkeys.index(hotkey)``, then ``pat_storage.get_pat_by_uid`` — the store file is
  read and parsed on every request, under a lock, exactly as upstream — then gittensor's answer for a
  miner without a stored PAT. (The stored-PAT branch would call GitHub; the benchmark measures the
  axon, so neither side's miner has a PAT stored.)

Usage: bt_bench_axon.py --store FILE --hotkey-seed HEX --miner SS58:STAKE [--miner ...]
Prints one JSON line when serving: {"ready": true, "port": N, "hotkey": "<ss58>"}; exits on SIGTERM.
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading
from typing import Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))

import bt_common  # noqa: E402  (loopback guard and get_external_ip stub before bittensor is used)
from bt_common import PatBroadcastSynapse, PatCheckSynapse, bt, emit  # noqa: E402

import uvicorn  # noqa: E402
from bittensor.core.axon import FastAPIThreadedServer  # noqa: E402

HOTKEYS = []
STAKES = []
STORE = None
LOCK = threading.Lock()


def get_pat_by_uid(uid):
    """gittensor's pat_storage.get_pat_by_uid: read the whole file under the process lock."""
    with LOCK:
        if not os.path.exists(STORE):
            return None
        with open(STORE, encoding="utf-8") as fh:
            entries = json.loads(fh.read())
        for entry in entries:
            if entry.get("uid") == uid:
                return entry
        return None


async def forward_check(synapse: PatCheckSynapse) -> PatCheckSynapse:
    hotkey = synapse.dendrite.hotkey
    uid = HOTKEYS.index(hotkey)
    entry = get_pat_by_uid(uid)
    if entry is None or entry.get("hotkey") != hotkey:
        synapse.has_pat = False
        synapse.pat_valid = False
        synapse.rejection_reason = "No PAT stored for this miner"
        return synapse
    raise RuntimeError("the benchmark miner must not have a stored PAT")


async def forward_broadcast(synapse: PatBroadcastSynapse) -> PatBroadcastSynapse:
    synapse.github_access_token = ""
    synapse.accepted = False
    synapse.rejection_reason = "benchmark axon: broadcasts are not measured"
    return synapse


def blacklist_check(synapse: PatCheckSynapse) -> Tuple[bool, str]:
    hotkey = synapse.dendrite.hotkey
    if hotkey not in HOTKEYS:
        return True, f"Hotkey {hotkey[:16]}... not registered"
    return False, "Hotkey recognized"


def blacklist_broadcast(synapse: PatBroadcastSynapse) -> Tuple[bool, str]:
    return blacklist_check(synapse)


def priority_check(synapse: PatCheckSynapse) -> float:
    hotkey = synapse.dendrite.hotkey
    return float(STAKES[HOTKEYS.index(hotkey)]) if hotkey in HOTKEYS else 0.0


def priority_broadcast(synapse: PatBroadcastSynapse) -> float:
    return priority_check(synapse)


class LoopbackServer(FastAPIThreadedServer):
    def __init__(self, config, sock):
        super().__init__(config=config)
        self._sock = sock

    def run(self, sockets=None):
        return super().run(sockets=[self._sock])


def main() -> int:
    global STORE
    p = argparse.ArgumentParser()
    p.add_argument("--store", required=True)
    p.add_argument("--hotkey-seed", required=True)
    p.add_argument("--miner", action="append", default=[], help="SS58:STAKE, in uid order from 0")
    args = p.parse_args()
    STORE = args.store
    for m in args.miner:
        hk, _, stake = m.partition(":")
        HOTKEYS.append(hk)
        STAKES.append(float(stake or 0))

    keypair = bt_common.keypair_from_seed(args.hotkey_seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bt_common.LOOPBACK, 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    axon = bt.Axon(wallet=bt_common.LocalWallet(keypair), port=port, ip=bt_common.LOOPBACK,
                   external_ip=bt_common.LOOPBACK, external_port=port)
    axon.fast_config = uvicorn.Config(axon.app, host=bt_common.LOOPBACK, port=port, log_level="critical", loop="none")
    axon.fast_server = LoopbackServer(config=axon.fast_config, sock=sock)
    axon.attach(forward_fn=forward_check, blacklist_fn=blacklist_check, priority_fn=priority_check)
    axon.attach(forward_fn=forward_broadcast, blacklist_fn=blacklist_broadcast, priority_fn=priority_broadcast)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if not bt_common.start_axon(axon, "bt_bench_axon"):
        return 1
    emit({"ready": True, "port": port, "hotkey": keypair.ss58_address})
    while not stop.wait(0.2):
        pass
    axon.fast_server.should_exit = True
    axon.stop()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)
