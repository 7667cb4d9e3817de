#!/usr/bin/env python3
"""The Python reference of benchmark 1 (benches/run.sh): one PatCheckSynapse fan-out with a real
``bt.Dendrite`` (bittensor 10.3.1) to every validator of the farm (examples/bench_farm.rs), timed
in-process, repeated. The counterpart of examples/bench_fanout.rs.

Each repetition uses a fresh ``bt.Dendrite`` (a fresh aiohttp session, as one ``gitt miner check``
has) and sends to all axons at once with ``await dendrite.forward(axons, PatCheckSynapse(),
timeout=T, deserialize=False)``, the call gittensor's CLI makes; the clock covers the fan-out only.
Everything runs in ONE ``asyncio.run`` (a Dendrite is bound to its event loop).

Usage: bt_fanout.py --validators FARM.json --seed HEX --timeout 2 --reps 7 [--warmup 1]
Prints one JSON line: {"client": "python", "walls_s": [...], "answered": [...], ...}.
"""

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))

import bt_common  # noqa: E402  (loopback guard and get_external_ip stub before bittensor is used)
from bt_common import PatCheckSynapse, bt, emit  # noqa: E402


def axons_from_farm(path):
    with open(path, encoding="utf-8") as fh:
        farm = json.loads(fh.readline())
    return [
        bt.AxonInfo(version=0, ip=v["ip"], port=int(v["port"]), ip_type=4, hotkey=v["hotkey"], coldkey=v["hotkey"],
                    protocol=4, placeholder1=0, placeholder2=0)
        for v in farm["validators"]
    ]


async def run(args, keypair, axons):
    walls, answered, valid, silent = [], [], [], []
    for rep in range(args.warmup + args.reps):
        dendrite = bt.Dendrite(wallet=keypair)
        started = time.perf_counter()
        responses = await dendrite.forward(axons, PatCheckSynapse(), timeout=args.timeout, deserialize=False)
        wall = time.perf_counter() - started
        await dendrite.aclose_session()
        if rep < args.warmup:
            continue
        walls.append(wall)
        answered.append(sum(1 for r in responses if r.dendrite.status_code == 200))
        valid.append(sum(1 for r in responses if r.dendrite.status_code == 200 and r.pat_valid is True))
        silent.append(sum(1 for r in responses if r.dendrite.status_code in (408, 503, 422)))
    return walls, answered, valid, silent


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--validators", required=True)
    p.add_argument("--seed", required=True)
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args()
    keypair = bt_common.keypair_from_seed(args.seed)
    axons = axons_from_farm(args.validators)
    walls, answered, valid, silent = asyncio.run(run(args, keypair, axons))
    emit({"client": "python", "n": len(axons), "timeout_s": args.timeout, "concurrency": len(axons),
          "walls_s": walls, "answered": answered, "valid": valid, "no_response": silent})
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)
