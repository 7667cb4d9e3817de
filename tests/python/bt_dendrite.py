#!/usr/bin/env python3
"""Send gittensor's PAT synapses with a REAL ``bt.Dendrite`` (bittensor 10.3.1) and print the results.

All requests run inside ONE ``asyncio.run`` with ONE Dendrite (one uuid). Prints a JSON list on stdout,
one object per request sent (see README.md for the keys). Exit code 0 when everything was sent and
reported (whatever the HTTP outcome), 2 on usage errors, 1 on internal errors.

The PAT is never taken from argv: ``--token-env VAR`` or ``--token-file PATH``.

Tamper modes (negative tests). All requests are still built and signed by the real library
(``Dendrite.preprocess_synapse_for_request``):
  --corrupt-signature  after signing, flip the lowest bit of the first byte of the signature's scalar
                       half (byte 32): a well-formed ``0x``+128-hex signature that does not verify → 401.
  --no-signature       drop the signature (no ``bt_header_dendrite_signature`` header, ``null`` in the body).
  --clock-offset S     the library's ``time.time_ns()`` is shifted by S seconds (float, may be negative)
                       while it builds the nonce and signs, so the nonce is S seconds off and correctly signed.
  --replay             each axon is sent the same request twice: the second send reuses the first
                       request's preprocessed synapse unchanged (same nonce, uuid, signature, body), sent
                       again through ``Dendrite.call``. The second answer is expected to be 401.
  --body-hotkey SS58   headers signed for our hotkey, but the JSON body's ``dendrite.hotkey`` is SS58. This
                       cannot be expressed through ``Dendrite.call`` (it sends ``to_headers()`` and
                       ``model_dump()`` of one object), so the request is preprocessed/signed by the library,
                       the body dict is edited, and it is posted with the dendrite's own aiohttp session; the
                       answer is processed with the library's ``process_server_response`` /
                       ``process_error_message`` exactly as ``Dendrite.call`` does.
"""

import argparse
import asyncio
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bt_common  # noqa: E402  (must come before any other bittensor use)
from bt_common import SYNAPSES, bt, emit  # noqa: E402

import aiohttp  # noqa: E402
import bittensor.core.dendrite as dendrite_mod  # noqa: E402


class _ShiftedClock:
    """Stands in for the ``time`` module inside bittensor.core.dendrite while a nonce is made."""

    def __init__(self, offset_ns: int):
        self._offset_ns = offset_ns

    def time_ns(self) -> int:
        return time.time_ns() + self._offset_ns

    def __getattr__(self, name):
        return getattr(time, name)


class HarnessDendrite(bt.Dendrite):
    """bt.Dendrite with opt-in tampering applied right after the library's own preprocessing."""

    def __init__(self, keypair, corrupt_signature=False, no_signature=False, clock_offset=0.0):
        super().__init__(wallet=keypair)
        self.corrupt_signature = corrupt_signature
        self.no_signature = no_signature
        self.clock_offset_ns = int(round(clock_offset * 1e9))
        self.replay_next = {}  # (ip, port, hotkey) -> preprocessed synapse to resend verbatim
        self.last_prepared = {}

    def preprocess_synapse_for_request(self, target_axon_info, synapse, timeout=12.0):
        key = (target_axon_info.ip, target_axon_info.port, target_axon_info.hotkey)
        replay = self.replay_next.pop(key, None)
        if replay is not None:
            return replay
        if self.clock_offset_ns:
            saved = dendrite_mod.time
            dendrite_mod.time = _ShiftedClock(self.clock_offset_ns)
            try:
                synapse = super().preprocess_synapse_for_request(target_axon_info, synapse, timeout)
            finally:
                dendrite_mod.time = saved
        else:
            synapse = super().preprocess_synapse_for_request(target_axon_info, synapse, timeout)
        if self.corrupt_signature:
            sig = bytearray(bytes.fromhex(synapse.dendrite.signature[2:]))
            sig[32] ^= 0x01
            synapse.dendrite.signature = "0x" + sig.hex()
        if self.no_signature:
            synapse.dendrite.signature = None
        self.last_prepared[key] = synapse.model_copy(deep=True)
        return synapse

    async def call_with_body_hotkey(self, target_axon, synapse, timeout, body_hotkey):
        """Like ``Dendrite.call`` but the JSON body names ``body_hotkey`` as the dendrite hotkey."""
        start_time = time.time()
        request_name = synapse.__class__.__name__
        url = self._get_endpoint_url(target_axon, request_name=request_name)
        synapse = self.preprocess_synapse_for_request(target_axon, synapse, timeout)
        headers = synapse.to_headers()
        body = synapse.model_dump()
        body["dendrite"]["hotkey"] = body_hotkey
        try:
            async with (await self.session).post(
                url=url, headers=headers, json=body, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                json_response = await response.json()
                self.process_server_response(response, json_response, synapse)
            synapse.dendrite.process_time = str(time.time() - start_time)
        except Exception as e:  # noqa: BLE001 - mirrors Dendrite.call
            synapse = self.process_error_message(synapse, request_name, e)
        return synapse


def parse_axon(spec: str):
    parts = spec.rsplit(":", 2)
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"--axon must be IP:PORT:HOTKEY, got {spec!r}")
    ip, port, hotkey = parts
    return bt.AxonInfo(
        version=0, ip=ip, port=int(port), ip_type=6 if ":" in ip else 4, hotkey=hotkey,
        coldkey=hotkey, protocol=4, placeholder1=0, placeholder2=0,
    )


def result_of(synapse, axon, attempt: int, elapsed: float, kind: str) -> dict:
    d = synapse.dendrite
    out = {
        "axon": f"{axon.ip}:{axon.port}",
        "axon_hotkey": axon.hotkey,
        "attempt": attempt,
        "synapse": type(synapse).__name__,
        "status_code": d.status_code,
        "status_message": d.status_message,
        "axon_status_code": synapse.axon.status_code if synapse.axon else None,
        "is_success": synapse.is_success,
        "is_failure": synapse.is_failure,
        "is_timeout": synapse.is_timeout,
        "is_blacklist": synapse.is_blacklist,
        "failed_verification": synapse.failed_verification,
        "elapsed": round(elapsed, 6),
        "dendrite_hotkey": d.hotkey,
        "nonce": d.nonce,
        "uuid": d.uuid,
        "signed": bool(d.signature),
        "rejection_reason": synapse.rejection_reason,
    }
    if kind == "check":
        out["has_pat"] = synapse.has_pat
        out["pat_valid"] = synapse.pat_valid
    else:
        out["accepted"] = synapse.accepted
        # never print the token; only whether a 200 answer echoed it back (on other statuses the
        # local synapse keeps the token we sent, so there is nothing to tell)
        out["token_echoed"] = bool(synapse.github_access_token) if d.status_code == 200 else None
    return out


def read_token(args) -> str:
    if args.token_env:
        if args.token_env not in os.environ:
            raise SystemExit(f"bt_dendrite: environment variable {args.token_env} is not set")
        return os.environ[args.token_env]
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as fh:
            return fh.read().rstrip("\r\n")
    raise SystemExit("bt_dendrite: broadcast needs --token-env VAR or --token-file PATH")


async def run(args, keypair, axons, token) -> list:
    kind = args.synapse
    cls = SYNAPSES[kind]
    d = HarnessDendrite(
        keypair,
        corrupt_signature=args.corrupt_signature,
        no_signature=args.no_signature,
        clock_offset=args.clock_offset,
    )

    def make():
        return cls(github_access_token=token) if kind == "broadcast" else cls()

    async def one(axon, attempt):
        t0 = time.monotonic()
        if args.body_hotkey:
            s = await d.call_with_body_hotkey(axon, make(), args.timeout, args.body_hotkey)
        else:
            s = await d.call(target_axon=axon, synapse=make(), timeout=args.timeout, deserialize=False)
        return result_of(s, axon, attempt, time.monotonic() - t0, kind)

    async def per_axon(axon):
        results = []
        sends = 2 if args.replay else args.count
        for attempt in range(sends):
            if args.replay and attempt == 1:
                key = (axon.ip, axon.port, axon.hotkey)
                d.replay_next[key] = d.last_prepared[key].model_copy(deep=True)
            results.append(await one(axon, attempt))
        return results

    try:
        if args.sequential:
            groups = [await per_axon(a) for a in axons]
        else:
            groups = await asyncio.gather(*(per_axon(a) for a in axons))
    finally:
        await d.aclose_session()
    return [r for g in groups for r in g]


def main(argv) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--synapse", required=True, choices=["check", "broadcast"])
    p.add_argument("--axon", action="append", required=True, type=parse_axon, help="IP:PORT:HOTKEY (repeatable)")
    key = p.add_mutually_exclusive_group(required=True)
    key.add_argument("--seed", help="hotkey as a 32-byte (0x-)hex mini secret (test keys only)")
    key.add_argument("--hotkey-file", help="path of a bittensor hotkey file (unencrypted)")
    key.add_argument("--mnemonic-env", help="name of an environment variable holding the hotkey mnemonic")
    tok = p.add_mutually_exclusive_group()
    tok.add_argument("--token-env", help="environment variable holding the PAT (broadcast)")
    tok.add_argument("--token-file", help="file holding the PAT (broadcast; trailing newline stripped)")
    p.add_argument("--timeout", type=float, default=None, help="seconds (default: gittensor's 15 check / 30 broadcast)")
    p.add_argument("--count", type=int, default=1, help="send N times to each axon, one after the other")
    p.add_argument("--sequential", action="store_true", help="axons one after the other instead of concurrently")
    p.add_argument("--corrupt-signature", action="store_true")
    p.add_argument("--no-signature", action="store_true")
    p.add_argument("--replay", action="store_true")
    p.add_argument("--clock-offset", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--body-hotkey", metavar="SS58")
    args = p.parse_args(argv[1:])
    if args.timeout is None:
        args.timeout = 15.0 if args.synapse == "check" else 30.0
    if args.count < 1:
        p.error("--count must be >= 1")

    mnemonic = None
    if args.mnemonic_env:
        mnemonic = os.environ.get(args.mnemonic_env)
        if not mnemonic:
            p.error(f"environment variable {args.mnemonic_env} is empty or not set")
    keypair = bt_common.load_keypair(seed=args.seed, hotkey_file=args.hotkey_file, mnemonic=mnemonic)
    token = read_token(args) if args.synapse == "broadcast" else None

    results = asyncio.run(run(args, keypair, args.axon, token))
    emit(results)
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv)
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            code = 2
        else:
            code = e.code if isinstance(e.code, int) else 0
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)
