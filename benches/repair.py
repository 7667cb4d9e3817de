#!/usr/bin/env python3
"""Time to repair, measured against real processes (issue 14), everything on 127.0.0.1.

For each scheduler, one farm: a fake GitHub (`patrol dev fake-github`, it counts every call made
with the PAT), N reference validators (`patrol validator serve`, each with its own store file and a
fixed port) and one `patrol run` covering them from a static validator list.

  new  `patrol run` with its default configuration (liveness probes, GitHub budget);
  old  the same binary with `probe_interval = "off"` and `github_budget = "off"`: today's
       scheduler before issue 14 (checks at the 15-minute interval, exponential backoff).

Both farms run at once (same machine, same run). Each one:
  1. waits until every validator holds the PAT (start-up), then lets it settle;
  2. steady window: counts the fake GitHub's calls on the PAT and the PATs patrol sent over
     REPAIR_STEADY_SECS (600), reported per hour;
  3. restarts: every REPAIR_SPACING seconds (60) the next validator is stopped (SIGTERM), its store
     is deleted, and it is started again REPAIR_DOWN_SECS (20) later on the same port. Its repair
     time runs from its ready line (the port answers) to the PAT being back in its store file
     (polled every 50 ms), at most REPAIR_TIMEOUT seconds (1800).

Prints markdown tables (p50/p95/max per scheduler, calls/h) and writes results.json/results.md to
REPAIR_OUT (target/bench/repair). Exits non-zero only when something could not run; never on speed.

  REPAIR_PATROL=target/release/patrol python3 benches/repair.py
  Knobs: REPAIR_SCHEDULERS ("new old"), REPAIR_N (16), REPAIR_RESTARTS (16), REPAIR_STEADY_SECS,
  REPAIR_SPACING, REPAIR_DOWN_SECS, REPAIR_TIMEOUT, REPAIR_OUT, REPAIR_KEEP=1 (keep the scratch dirs).
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATROL = os.environ.get("REPAIR_PATROL", os.path.join(ROOT, "target", "release", "patrol"))
SCHEDULERS = os.environ.get("REPAIR_SCHEDULERS", "new old").split()
N = int(os.environ.get("REPAIR_N", "16"))
RESTARTS = int(os.environ.get("REPAIR_RESTARTS", "16"))
STEADY_SECS = float(os.environ.get("REPAIR_STEADY_SECS", "600"))
SPACING = float(os.environ.get("REPAIR_SPACING", "60"))
DOWN_SECS = float(os.environ.get("REPAIR_DOWN_SECS", "20"))
TIMEOUT = float(os.environ.get("REPAIR_TIMEOUT", "1800"))
SETTLE_SECS = float(os.environ.get("REPAIR_SETTLE_SECS", "30"))
OUT = os.environ.get("REPAIR_OUT", os.path.join(ROOT, "target", "bench", "repair"))
KEEP = os.environ.get("REPAIR_KEEP") == "1"

# The miner's hotkey (the test suite's dendrite key) and a PAT the fake GitHub knows.
MINER_SEED = "0xfac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e"
MINER_HOTKEY = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"
PAT = "ghp_" + "R3pa1rBench" * 3 + "abcd"


def log(msg):
    print(f"repair: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-q * len(v) // 100)) - 1))
    return v[k]


class Proc:
    """A patrol process with piped stdout; `ready` is its JSON ready line (when it prints one)."""

    def __init__(self, args, stderr_path, cwd, want_ready=True):
        self.stderr = open(stderr_path, "ab")
        env = {k: v for k, v in os.environ.items() if k not in ("PATROL_CONFIG", "GITTENSOR_MINER_PAT", "NOTIFY_SOCKET")}
        env["HOME"] = cwd
        env.setdefault("RUST_LOG", "info")
        self.p = subprocess.Popen([PATROL] + args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE if want_ready else self.stderr, stderr=self.stderr)
        self.ready = None
        if want_ready:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError(f"patrol {args[:2]} exited before its ready line ({stderr_path})")
            self.ready = json.loads(line)
            # Keep draining stdout so the process never blocks on a full pipe.
            threading.Thread(target=self.p.stdout.read, daemon=True).start()

    def stop(self, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.stderr.close()


class Farm:
    def __init__(self, name, extra_reconcile):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"patrol-repair-{name}-")
        self.procs = []
        self.lock = threading.Lock()
        gh_cfg = os.path.join(self.dir, "github.json")
        with open(gh_cfg, "w") as f:
            json.dump({"accounts": [{"token": PAT, "id": 4242, "login": "repair-miner"}]}, f)
        self.github = Proc(["dev", "fake-github", "--config", gh_cfg], os.path.join(self.dir, "github.log"), self.dir)
        self.procs.append(self.github)
        self.gh_addr = self.github.ready["listen"]
        self.validators = []
        for i in range(N):
            seed = "0x" + hashlib.sha256(f"patrol-repair-validator-{i}".encode()).hexdigest()
            port = free_port()
            vdir = os.path.join(self.dir, f"v{i}")
            os.mkdir(vdir)
            v = {"i": i, "seed": seed, "port": port, "dir": vdir, "store": os.path.join(vdir, "miner_pats.json")}
            v["proc"] = self.start_validator(v)
            v["hotkey"] = v["proc"].ready["hotkey"]
            self.validators.append(v)
        with open(os.path.join(self.dir, "hotkey"), "w") as f:
            f.write(json.dumps({"secretSeed": MINER_SEED}))
        with open(os.path.join(self.dir, "pat"), "w") as f:
            f.write(PAT + "\n")
        os.chmod(os.path.join(self.dir, "hotkey"), 0o600)
        os.chmod(os.path.join(self.dir, "pat"), 0o600)
        self.metrics_port = free_port()
        cfg = [
            '[wallet]\nhotkey_file = "hotkey"\n[pat]\nfile = "pat"\n',
            f'[agent]\nstate_dir = "state"\nlisten = "127.0.0.1:{self.metrics_port}"\n',
            f'[github]\napi_url = "http://{self.gh_addr}"\n',
            "[reconcile]\n" + extra_reconcile,
        ]
        for v in self.validators:
            cfg.append(f'[[validators.static]]\nuid = {v["i"] + 1}\nhotkey = "{v["hotkey"]}"\nip = "127.0.0.1"\n'
                       f'port = {v["port"]}\nstake = 20000.0\nvtrust = 0.9\n')
        with open(os.path.join(self.dir, "patrol.toml"), "w") as f:
            f.write("\n".join(cfg))
        self.agent = Proc(["run", "--config", "patrol.toml"], os.path.join(self.dir, "agent.log"), self.dir,
                          want_ready=False)

    def start_validator(self, v):
        return Proc(["validator", "serve", "--hotkey-seed", v["seed"], "--listen", f"127.0.0.1:{v['port']}",
                     "--store", v["store"], "--github-api-url", f"http://{self.gh_addr}",
                     "--miner", f"0:{MINER_HOTKEY}:100"],
                    os.path.join(v["dir"], "serve.log"), v["dir"])

    def holds(self, v):
        try:
            with open(v["store"]) as f:
                entries = json.load(f)
        except (OSError, ValueError):
            return False
        return any(e.get("hotkey") == MINER_HOTKEY and e.get("pat") == PAT for e in entries)

    def github_calls(self):
        with urllib.request.urlopen(f"http://{self.gh_addr}/_fake/stats", timeout=5) as r:
            s = json.load(r)
        return s["user"]["total"] + s["graphql"]["total"]

    def metric_sum(self, name):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def close(self):
        self.agent.stop()
        for v in self.validators:
            v["proc"].stop()
        self.github.stop()
        if not KEEP:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            log(f"{self.name}: kept {self.dir}")


def wait_until(what, timeout, pred, every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_farm(name, extra, results):
    farm = Farm(name, extra)
    r = {"scheduler": name, "config": extra.strip().splitlines(), "repairs": [], "unrepaired": 0}
    try:
        t = time.monotonic()
        wait_until(f"{name}: every validator holding the PAT", 300, lambda: all(farm.holds(v) for v in farm.validators))
        r["startup_secs"] = round(time.monotonic() - t, 1)
        log(f"{name}: all {N} validators hold the PAT after {r['startup_secs']} s; settling {SETTLE_SECS:.0f} s")
        time.sleep(SETTLE_SECS)

        calls0, sent0, t0 = farm.github_calls(), farm.metric_sum("patrol_broadcasts_total"), time.monotonic()
        est0 = farm.metric_sum("patrol_github_calls_estimated_total")
        time.sleep(STEADY_SECS)
        calls1, sent1, t1 = farm.github_calls(), farm.metric_sum("patrol_broadcasts_total"), time.monotonic()
        est1 = farm.metric_sum("patrol_github_calls_estimated_total")
        hours = (t1 - t0) / 3600
        r["steady"] = {"secs": round(t1 - t0), "github_calls": calls1 - calls0,
                       "github_calls_per_hour": round((calls1 - calls0) / hours, 1),
                       "estimated_per_hour": round((est1 - est0) / hours, 1), "pats_sent": int(sent1 - sent0)}
        log(f"{name}: steady {r['steady']}")

        # Restarts, one every SPACING seconds, each measured by its own watcher thread.
        watchers = []
        run_t0, run_calls0, run_sent0 = time.monotonic(), farm.github_calls(), farm.metric_sum("patrol_broadcasts_total")
        for k in range(RESTARTS):
            start_at = run_t0 + k * SPACING
            time.sleep(max(0.0, start_at - time.monotonic()))
            v = farm.validators[k % N]
            if "watcher" in v and v["watcher"].is_alive():
                v["watcher"].join()  # the same validator again: after its last repair
            v["proc"].stop()
            try:
                os.remove(v["store"])
            except FileNotFoundError:
                pass
            time.sleep(DOWN_SECS)

            def restart_and_watch(v=v, k=k):
                with farm.lock:
                    v["proc"] = farm.start_validator(v)
                answered = time.monotonic()
                held = None
                while time.monotonic() - answered < TIMEOUT:
                    if farm.holds(v):
                        held = time.monotonic()
                        break
                    time.sleep(0.05)
                if held is None:
                    r["unrepaired"] += 1
                    log(f"{name}: restart {k} (validator {v['i']}) NOT repaired within {TIMEOUT:.0f} s")
                else:
                    r["repairs"].append(round(held - answered, 2))
                    log(f"{name}: restart {k} (validator {v['i']}) repaired {held - answered:.1f} s after answering")

            w = threading.Thread(target=restart_and_watch)
            w.start()
            v["watcher"] = w
            watchers.append(w)
        for w in watchers:
            w.join()
        run_hours = (time.monotonic() - run_t0) / 3600
        run_calls = farm.github_calls() - run_calls0
        r["restart_phase"] = {"secs": round(run_hours * 3600), "github_calls": run_calls,
                              "github_calls_per_hour": round(run_calls / run_hours, 1),
                              "pats_sent": int(farm.metric_sum("patrol_broadcasts_total") - run_sent0)}
        if r["repairs"]:
            rep = r["repairs"]
            r["p50"], r["p95"], r["max"] = pct(rep, 50), pct(rep, 95), max(rep)
        with open(os.path.join(farm.dir, "agent.log"), "rb") as f:
            if PAT.encode() in f.read():
                raise RuntimeError(f"{name}: the PAT leaked into the agent's log")
    except Exception as e:  # reported, the run exits non-zero
        r["error"] = str(e)
        log(f"{name}: {e}")
    finally:
        farm.close()
        results[name] = r


CONFIGS = {
    "new": "",
    "old": 'probe_interval = "off"\ngithub_budget = "off"\n',
}


def main():
    if not os.access(PATROL, os.X_OK):
        sys.exit(f"repair: no patrol binary at {PATROL} (cargo build --release, or set REPAIR_PATROL)")
    os.makedirs(OUT, exist_ok=True)
    log(f"{PATROL}: {N} validators, {RESTARTS} restarts every {SPACING:.0f} s ({DOWN_SECS:.0f} s down), "
        f"steady window {STEADY_SECS:.0f} s, schedulers {SCHEDULERS}")
    results = {}
    threads = [threading.Thread(target=run_farm, args=(s, CONFIGS[s], results)) for s in SCHEDULERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    lines = ["| scheduler | restarts | repaired | p50 | p95 | max | steady GitHub calls/h (estimate) | steady PATs sent "
             "| restart phase: GitHub calls (per hour) | start-up |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in SCHEDULERS:
        r = results[s]
        if "error" in r:
            lines.append(f"| {s} | error: {r['error']} |")
            continue
        rep = r["repairs"]
        fmt = (lambda x: f"{x:.1f} s") if rep else (lambda x: "–")
        st, rp = r["steady"], r["restart_phase"]
        lines.append(f"| {s} | {RESTARTS} | {len(rep)} | {fmt(r.get('p50', 0))} | {fmt(r.get('p95', 0))} "
                     f"| {fmt(r.get('max', 0))} | {st['github_calls_per_hour']} ({st['estimated_per_hour']}) "
                     f"| {st['pats_sent']} | {rp['github_calls']} in {rp['secs']} s ({rp['github_calls_per_hour']}) "
                     f"| {r['startup_secs']} s |")
    table = "\n".join(lines)
    print(table, flush=True)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump({"n": N, "restarts": RESTARTS, "spacing": SPACING, "down": DOWN_SECS, "steady_secs": STEADY_SECS,
                   "results": results}, f, indent=2)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(table + "\n")
    if any("error" in results[s] for s in SCHEDULERS):
        sys.exit(1)


if __name__ == "__main__":
    main()
