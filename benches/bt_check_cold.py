#!/usr/bin/env python3
"""The Python reference of benchmark 2 (benches/run.sh): what ``patrol check --json --config FILE``
does, with the real bittensor 10.3.1, from a cold process: import bittensor, read the same patrol
config file, load the wallet's hotkey file with the library (``bt.Wallet(...).hotkey``), select the
eligible validators from its static list with gitt's rule (vtrust > min_vtrust, stake >= min_stake),
fan out one PatCheckSynapse to all of them at once with ``bt.Dendrite.forward`` and the config's
``check_timeout``, classify as ``gitt miner check`` does, and print the JSON.

Usage: bt_check_cold.py PATROL_CONFIG.toml

(Positional: bittensor's own argument parser, run at import, takes any ``--config`` as ITS config file.)
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))

import bt_common  # noqa: E402,F401  (loopback guard and get_external_ip stub; imports bittensor)
from bt_common import PatCheckSynapse, bt, emit  # noqa: E402

import argparse  # noqa: E402
import asyncio  # noqa: E402
import tomllib  # noqa: E402


def seconds(text: str) -> float:
    text = text.strip()
    for suffix, scale in (("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)


def category(s) -> str:
    if s.pat_valid is True:
        return "valid"
    if s.has_pat is False:
        return "no_pat"
    if s.has_pat and s.pat_valid is False:
        return "invalid_pat"
    if s.has_pat and s.pat_valid is None:
        return "inconclusive"
    return "no_response"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("config")
    args = p.parse_args()
    with open(args.config, "rb") as fh:
        cfg = tomllib.load(fh)
    w = cfg.get("wallet", {})
    wallet = bt.Wallet(name=w.get("name", "default"), hotkey=w.get("hotkey", "default"),
                       path=os.path.expanduser(w.get("path", "~/.bittensor/wallets")))
    hotkey = wallet.hotkey  # reads and decodes the keyfile
    v = cfg.get("validators", {})
    min_vtrust, min_stake = float(v.get("min_vtrust", 0.25)), float(v.get("min_stake", 15000.0))
    eligible = [x for x in v.get("static", []) if x["vtrust"] > min_vtrust and x["stake"] >= min_stake]
    axons = [bt.AxonInfo(version=0, ip=x["ip"], port=int(x["port"]), ip_type=4, hotkey=x["hotkey"],
                         coldkey=x["hotkey"], protocol=4, placeholder1=0, placeholder2=0) for x in eligible]
    timeout = seconds(cfg.get("reconcile", {}).get("check_timeout", "15s"))

    async def fan_out():
        dendrite = bt.Dendrite(wallet=wallet)
        try:
            return await dendrite.forward(axons, PatCheckSynapse(), timeout=timeout, deserialize=False)
        finally:
            await dendrite.aclose_session()

    responses = asyncio.run(fan_out())
    results = []
    counts = {"valid": 0, "no_pat": 0, "invalid_pat": 0, "inconclusive": 0, "no_response": 0}
    for x, r in zip(eligible, responses):
        c = category(r)
        counts[c] += 1
        results.append({"uid": x["uid"], "hotkey": x["hotkey"], "has_pat": r.has_pat, "pat_valid": r.pat_valid,
                        "rejection_reason": r.rejection_reason, "status_code": r.dendrite.status_code,
                        "category": c})
    emit({"success": True, "miner_hotkey": hotkey.ss58_address, "total_validators": len(eligible), **counts,
          "results": results})
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)
