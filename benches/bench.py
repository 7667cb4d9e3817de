#!/usr/bin/env python3
"""Driver of benches/run.sh: patrol against the Python reference (bittensor 10.3.1), on 127.0.0.1.

Runs with the system python3 (stdlib only); the Python reference itself runs in the venv given by
--py. Every process it starts is killed and reaped on exit (also on SIGTERM/SIGINT). Measurements:

1. fanout  - one PatCheckSynapse fan-out to all N farm validators, in-process, fresh client per rep:
             examples/bench_fanout.rs (patrol::fanout::Fanout::check) vs benches/bt_fanout.py (bt.Dendrite).
2. cold    - a fresh process to the JSON result: `patrol check --json` vs benches/bt_check_cold.py,
             against all N (incl. the silent quarter) and against the answering validators only.
3. footprint - peak RSS and CPU seconds (wait4 rusage) of one `patrol reconcile` (fresh state dir per
             rep), and `patrol run` idle for --idle-secs (sampled from /proc every second; started
             first, with its own farm, and left to idle while the other benchmarks run).
4. axon    - verified PatCheckSynapse requests/s of `patrol validator serve` vs a Python bt.Axon
             (benches/bt_bench_axon.py), 1/16/64 clients (examples/axon_load.rs), with both servers'
             and the load generator's CPU.

Each figure is the median over --reps repetitions (one unmeasured warm-up first). Speed never fails
the run; a wrong answer (a validator not answering `valid` where it should) is reported loudly.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# The public Substrate dev phrase as the miner (as in the tests); the keyfile bittensor-wallet writes.
MINER_SEED = "0xfac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e"
MINER_HOTKEY = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"
MINER_KEYFILE = {
    "accountId": "0x46ebddef8cd9bb167dc30878d7113b7e168e6f0646beffd77d69d39bad76b47a",
    "publicKey": "0x46ebddef8cd9bb167dc30878d7113b7e168e6f0646beffd77d69d39bad76b47a",
    "secretPhrase": "bottom drive obey lake curtain smoke basket hold race lonely fit walk",
    "secretSeed": MINER_SEED,
    "ss58Address": MINER_HOTKEY,
    "privateKey": "0x05d65584630d16cd4af6d0bec10f34bb504a5dcb62dba2122d49f5a663763d0afd190cce74df356432b410bd64682309"
                  "d6dedb27c76845daf388557cbac3ca34",
}
VALIDATOR_SEED = "0x" + "11" * 32
VALIDATOR_HOTKEY = "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi"
CLK_TCK = os.sysconf("SC_CLK_TCK")

CHILDREN = []


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, **kw)
    CHILDREN.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in CHILDREN:
        CHILDREN.remove(p)


def cleanup(*_):
    for p in list(CHILDREN):
        try:
            stop(p)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass


def on_signal(signum, _frame):
    cleanup()
    sys.exit(128 + signum)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def run_timed(cmd, env=None, stderr_path=os.devnull, timeout=600):
    """Run cmd to completion: wall seconds (fork to reap), exit code, stdout, and its rusage."""
    with open(stderr_path, "ab") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env)
        CHILDREN.append(p)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        p.stdout.close()
        CHILDREN.remove(p)
    return {"wall": wall, "rc": p.returncode, "stdout": out.decode("utf-8", "replace"),
            "maxrss_mb": ru.ru_maxrss / 1024.0, "cpu_s": ru.ru_utime + ru.ru_stime,
            "user_s": ru.ru_utime, "sys_s": ru.ru_stime}


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


class Farm:
    """examples/bench_farm.rs: N validators in one process."""

    def __init__(self, args, n, dead_fraction, tag, delay=None):
        self.path = os.path.join(args.work, f"farm-{tag}.json")
        lo, hi = delay or (args.min_delay_ms, args.max_delay_ms)
        cmd = [args.farm, "--n", str(n), "--seed", str(args.seed), "--dead-fraction", str(dead_fraction),
               "--min-delay-ms", str(lo), "--max-delay-ms", str(hi)]
        self.p = spawn(cmd, stdout=subprocess.PIPE, stderr=open(os.path.join(args.work, f"farm-{tag}.err"), "wb"))
        line = self.p.stdout.readline()
        if not line:
            raise SystemExit(f"bench: the farm for {tag} did not start")
        self.info = json.loads(line)
        with open(self.path, "w") as fh:
            fh.write(line.decode())
        self.validators = self.info["validators"]
        self.alive = [v for v in self.validators if not v["dead"]]

    def write_alive(self, path):
        with open(path, "w") as fh:
            fh.write(json.dumps({"ready": True, "validators": self.alive}) + "\n")
        return path

    def close(self):
        stop(self.p)


def write_config(path, args, validators, concurrency, state_dir, pat_file=None):
    lines = [
        "[wallet]", 'name = "bench"', 'hotkey = "default"', f'path = "{args.wallets}"', "",
        "[pat]", f'file = "{pat_file or args.pat_file}"', "",
        "[validators]", "min_vtrust = 0.25", "min_stake = 15000.0", "",
        "[github]", 'api_url = "http://127.0.0.1:9"', "",
        "[reconcile]", f'check_timeout = "{int(args.timeout * 1000)}ms"', f"concurrency = {concurrency}", "",
        "[agent]", f'state_dir = "{state_dir}"', 'listen = "off"', 'log_format = "text"', "",
    ]
    for v in validators:
        lines += ["[[validators.static]]", f'uid = {v["uid"]}', f'hotkey = "{v["hotkey"]}"', f'ip = "{v["ip"]}"',
                  f'port = {v["port"]}', f'stake = {v["stake"]}', f'vtrust = {v["vtrust"]}', ""]
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    return path


def patrol_env(args):
    env = {k: v for k, v in os.environ.items() if k not in ("PATROL_CONFIG", "GITTENSOR_MINER_PAT",
                                                              "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "RUST_LOG")}
    env["HOME"] = args.work
    env["XDG_CONFIG_HOME"] = os.path.join(args.work, "xdg-config")
    env["XDG_STATE_HOME"] = os.path.join(args.work, "xdg-state")
    return env


def json_count(text, key):
    try:
        return json.loads(text).get(key)
    except (ValueError, AttributeError):
        return None


# ------------------------------------------------------------------------------------------------
# 3b. patrol run, idle (started first, sampled in a thread)


class IdleRun:
    def __init__(self, args, n):
        self.args = args
        self.farm = Farm(args, n, args.dead_fraction, f"idle-{n}")
        # `patrol run` watches the directories of its config and PAT files (inotify) to reload on a
        # change: they get a directory of their own, or every log line the other benchmarks write
        # into the scratch dir would wake the agent.
        home = os.path.join(args.work, "idle")
        os.makedirs(home)
        pat = os.path.join(home, "github-pat")
        shutil.copyfile(args.pat_file, pat)
        os.chmod(pat, 0o600)
        cfg = write_config(os.path.join(home, "config.toml"), args, self.farm.validators, args.idle_concurrency or n,
                           os.path.join(args.work, "state-idle"), pat_file=pat)
        self.err = os.path.join(args.work, "patrol-run.err")
        self.t0 = time.monotonic()
        self.p = spawn([args.patrol, "run", "--config", cfg], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=open(self.err, "wb"), env=patrol_env(args))
        self.samples = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        self.n = n

    def _sample(self):
        while not self.done.is_set():
            try:
                st = proc_status(self.p.pid)
                self.samples.append({
                    "t": time.monotonic() - self.t0, "cpu_s": proc_cpu_s(self.p.pid),
                    "rss_mb": int(st["VmRSS"].split()[0]) / 1024.0, "hwm_mb": int(st["VmHWM"].split()[0]) / 1024.0,
                    "threads": int(st["Threads"]),
                    "ctx": int(st["voluntary_ctxt_switches"]) + int(st["nonvoluntary_ctxt_switches"]),
                })
            except (OSError, KeyError, ValueError, IndexError):
                break
            self.done.wait(1.0)

    def finish(self):
        remaining = self.args.idle_secs - (time.monotonic() - self.t0)
        if remaining > 0:
            log(f"waiting {remaining:.0f} s more for `patrol run` to finish idling")
            time.sleep(remaining)
        self.done.set()
        self.thread.join()
        alive = self.p.poll() is None
        self.p.send_signal(signal.SIGTERM)
        _, status, ru = os.wait4(self.p.pid, 0)
        self.p.returncode = os.waitstatus_to_exitcode(status)
        CHILDREN.remove(self.p)
        self.farm.close()
        s = self.samples
        warm = self.args.idle_warmup
        idle = [x for x in s if x["t"] >= warm]
        first, last = (idle[0], idle[-1]) if len(idle) >= 2 else (s[0], s[-1])
        span = max(last["t"] - first["t"], 1e-9)
        return {
            "n": self.n, "seconds": s[-1]["t"] if s else 0.0, "still_running_at_end": alive,
            "exit_code": self.p.returncode,
            "peak_rss_mb": ru.ru_maxrss / 1024.0,
            "rss_end_mb": s[-1]["rss_mb"] if s else None,
            "rss_max_sampled_mb": max(x["rss_mb"] for x in s) if s else None,
            "cpu_total_s": ru.ru_utime + ru.ru_stime,
            "cpu_first_pass_s": first["cpu_s"],
            "idle_window_s": span, "idle_from_s": first["t"],
            "cpu_idle_s": last["cpu_s"] - first["cpu_s"],
            "cpu_idle_pct": 100.0 * (last["cpu_s"] - first["cpu_s"]) / span,
            "wakeups_per_s": (last["ctx"] - first["ctx"]) / span,
            "threads": s[-1]["threads"] if s else None,
            "concurrency": self.args.idle_concurrency or self.n,
            "samples_every_10s": s[::10],
        }


# ------------------------------------------------------------------------------------------------
# 1-3a. per N: fan-out, cold start, reconcile


def bench_fanout(args, farm, n):
    out = {}
    common = ["--validators", farm.path, "--seed", MINER_SEED, "--timeout", str(args.timeout),
              "--reps", str(args.reps), "--warmup", "1"]
    runs = [
        ("patrol", [args.fanout, *common, "--concurrency", str(args.concurrency or n)]),
        ("python", [args.py, "-B", os.path.join(HERE, "bt_fanout.py"), *common]),
        ("patrol_c32", [args.fanout, *common, "--concurrency", "32"]),
    ]
    for name, cmd in runs:
        if name == "patrol_c32" and n <= 32:
            continue
        r = run_timed(cmd, stderr_path=os.path.join(args.work, f"fanout-{name}-{n}.err"))
        try:
            res = json.loads(r["stdout"].strip().splitlines()[-1])
        except (ValueError, IndexError):
            log(f"fanout {name} N={n} failed (rc {r['rc']}); see {args.work}/fanout-{name}-{n}.err")
            continue
        expect = len(farm.alive)
        if any(v != expect for v in res["valid"]):
            log(f"WARNING fanout {name} N={n}: valid answers {res['valid']}, expected {expect} each")
        out[name] = res
        log(f"fanout N={n} {name}: median {median(res['walls_s']):.4f} s ({res['walls_s']})")
    return out


def bench_cold(args, farm, n):
    out = {}
    # A third farm-less variant: the answering validators' count, answering at once (0 ms), so the
    # limit is ~0 and the figure is the start-up itself.
    instant = Farm(args, len(farm.alive), 0.0, f"instant-{n}", delay=(0, 0))
    variants = [("all", farm.validators), ("answering", farm.alive), ("instant", instant.validators)]
    try:
        _bench_cold(args, farm, n, variants, out)
    finally:
        instant.close()
    return out


def _bench_cold(args, farm, n, variants, out):
    for variant, vals in variants:
        cfg = write_config(os.path.join(args.work, f"cold-{variant}-{n}.toml"), args, vals, args.concurrency or n,
                           os.path.join(args.work, f"state-cold-{n}"))
        cmds = {
            "patrol": [args.patrol, "check", "--json", "--config", cfg],
            "python": [args.py, "-B", os.path.join(HERE, "bt_check_cold.py"), cfg],
        }
        res = {k: [] for k in cmds}
        for rep in range(args.reps + 1):
            for name, cmd in cmds.items():
                r = run_timed(cmd, env=patrol_env(args) if name == "patrol" else None,
                              stderr_path=os.path.join(args.work, f"cold-{name}-{variant}-{n}.err"))
                valid = json_count(r["stdout"], "valid")
                if valid != len(farm.alive):
                    log(f"WARNING cold {name} {variant} N={n}: valid={valid} (rc {r['rc']}), expected {len(farm.alive)}")
                if rep > 0:
                    res[name].append({k: r[k] for k in ("wall", "maxrss_mb", "cpu_s", "rc")})
        out[variant] = res
        log(f"cold N={n} {variant}: patrol {median([x['wall'] for x in res['patrol']]):.3f} s, "
            f"python {median([x['wall'] for x in res['python']]):.3f} s")


def bench_reconcile(args, farm, n):
    runs = []
    for rep in range(args.reps + 1):
        state = tempfile.mkdtemp(prefix=f"state-reconcile-{n}-", dir=args.work)
        cfg = write_config(os.path.join(args.work, f"reconcile-{n}.toml"), args, farm.validators,
                           args.concurrency or n, state)
        r = run_timed([args.patrol, "reconcile", "--json", "--config", cfg], env=patrol_env(args),
                      stderr_path=os.path.join(args.work, f"reconcile-{n}.err"))
        sent = json_count(r["stdout"], "broadcasts_sent")
        if sent != 0 or json_count(r["stdout"], "valid") != len(farm.alive):
            log(f"WARNING reconcile N={n}: broadcasts_sent={sent}, rc {r['rc']}")
        if rep > 0:
            runs.append({k: r[k] for k in ("wall", "maxrss_mb", "cpu_s", "user_s", "sys_s", "rc")})
    log(f"reconcile N={n}: median wall {median([x['wall'] for x in runs]):.3f} s, "
        f"RSS {median([x['maxrss_mb'] for x in runs]):.1f} MB")
    return runs


# ------------------------------------------------------------------------------------------------
# 4. axon throughput


def make_store(path):
    entries = [{"uid": u, "hotkey": f"5Filler{u:041d}", "pat": f"ghp_filler{u:030d}", "github_id": str(10_000 + u),
                "stored_at": "2026-01-01T00:00:00+00:00"} for u in range(2, 202)]
    with open(path, "w") as fh:
        json.dump(entries, fh, indent=2)
    os.chmod(path, 0o600)


def wait_ready(p, name):
    line = p.stdout.readline()
    if not line:
        raise SystemExit(f"bench: {name} did not print its ready line")
    v = json.loads(line)
    return int(v.get("port") or v["listen"].rsplit(":", 1)[1])


def bench_axon(args):
    os.makedirs(os.path.join(args.work, "axon-patrol"), exist_ok=True)
    os.makedirs(os.path.join(args.work, "axon-python"), exist_ok=True)
    stores = [os.path.join(args.work, f"axon-{x}", "miner_pats.json") for x in ("patrol", "python")]
    for s in stores:
        make_store(s)
    servers = {
        "patrol": spawn([args.patrol, "validator", "serve", "--hotkey-seed", VALIDATOR_SEED, "--listen", "127.0.0.1:0",
                         "--store", stores[0], "--miner", f"0:{VALIDATOR_HOTKEY}:0", "--miner", f"1:{MINER_HOTKEY}:100",
                         "--github-api-url", "http://127.0.0.1:9"],
                        stdout=subprocess.PIPE, stderr=open(os.path.join(args.work, "axon-patrol.err"), "wb"),
                        env=patrol_env(args)),
        "python": spawn([args.py, "-B", os.path.join(HERE, "bt_bench_axon.py"), "--store", stores[1], "--hotkey-seed",
                         VALIDATOR_SEED, "--miner", f"{VALIDATOR_HOTKEY}:0", "--miner", f"{MINER_HOTKEY}:100"],
                        stdout=subprocess.PIPE, stderr=open(os.path.join(args.work, "axon-python.err"), "wb")),
    }
    ports = {k: wait_ready(p, k) for k, p in servers.items()}
    log(f"axons: patrol 127.0.0.1:{ports['patrol']}, python 127.0.0.1:{ports['python']}")
    out = {}
    for c in args.axon_concurrency:
        res = {k: [] for k in servers}
        for _rep in range(args.axon_reps):
            for name, p in servers.items():
                before = proc_cpu_s(p.pid)
                r = run_timed([args.load, "--target", f"127.0.0.1:{ports[name]}:{VALIDATOR_HOTKEY}", "--seed",
                               MINER_SEED, "--concurrency", str(c), "--duration", str(args.axon_duration),
                               "--warmup", str(args.axon_warmup)],
                              stderr_path=os.path.join(args.work, "axon-load.err"))
                server_cpu = proc_cpu_s(p.pid) - before
                try:
                    v = json.loads(r["stdout"].strip().splitlines()[-1])
                except (ValueError, IndexError):
                    log(f"axon {name} c={c}: load generator failed (rc {r['rc']})")
                    continue
                if v["errors"]:
                    log(f"WARNING axon {name} c={c}: {v['errors']} errors, first: {v['first_error']}")
                total = v["requests"] or 1
                wall = r["wall"]
                res[name].append({
                    "rps": v["rps"], "p50_ms": v["p50_ms"], "p99_ms": v["p99_ms"], "errors": v["errors"],
                    # CPU over the whole load run (warm-up included), per request of the whole run
                    "server_cpu_s": server_cpu, "loadgen_cpu_s": r["cpu_s"], "wall_s": wall,
                    "server_cpu_us_per_req": 1e6 * server_cpu / (total * wall / max(v["duration_s"], 1e-9)),
                    "loadgen_share": r["cpu_s"] / max(r["cpu_s"] + server_cpu, 1e-9),
                })
                log(f"axon c={c} {name}: {v['rps']:.1f} rps (server CPU {server_cpu:.2f} s, "
                    f"load generator {r['cpu_s']:.2f} s)")
        out[str(c)] = res
    for p in servers.values():
        stop(p)
    return out


# ------------------------------------------------------------------------------------------------
# report


def machine(args):
    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    model = next((l.split(":", 1)[1].strip() for l in sh(["lscpu"]).splitlines() if l.startswith("Model name")), "?")
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    pyver = sh([args.py, "-c", "import sys; print(sys.version.split()[0])"])
    btver = sh([args.py, "-c", "import importlib.metadata as m; print(m.version('bittensor'))"])
    return {
        "nproc": os.cpu_count(), "cpu": model, "ram_gb": round(mem_kb / 1024 / 1024, 1), "kernel": platform.release(),
        "rustc": sh(["rustc", "-V"]), "python": pyver, "bittensor": btver, "loadavg_start": os.getloadavg(),
    }


def fmt(x, d=3):
    return "–" if x is None or x != x else f"{x:.{d}f}"


def ratio(a, b):
    return "–" if not a or not b or a != a or b != b else f"{a / b:.1f}×"


def report(args, res):
    T = args.timeout
    lines = []
    m = res["machine"]
    lines.append(f"Machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gb']} GB RAM, Linux {m['kernel']}, {m['rustc']}, "
                 f"Python {m['python']}, bittensor {m['bittensor']}; load average at start "
                 f"{' '.join(f'{x:.2f}' for x in m['loadavg_start'])}, at end "
                 f"{' '.join(f'{x:.2f}' for x in res.get('loadavg_end', []))}.")
    lines.append(f"Settings: reps={args.reps} (+1 warm-up), timeout={T} s, N={args.ns}, dead fraction "
                 f"{args.dead_fraction}, delay {args.min_delay_ms}–{args.max_delay_ms} ms, idle {args.idle_secs} s, "
                 f"axon {args.axon_duration} s × {args.axon_reps} per point.")
    if res.get("fanout"):
        lines += ["", "### 1. One check fan-out to all N (in-process, median wall seconds; limit = timeout "
                      f"= {T} s)", "",
                  "| N | patrol wall | patrol wall − timeout | Python wall | Python wall − timeout | wall ratio "
                  "(Python / patrol) | over-limit ratio | patrol, concurrency 32 (the old default) |",
                  "|---|---|---|---|---|---|---|---|"]
        for n, r in res["fanout"].items():
            p = median(r.get("patrol", {}).get("walls_s", []))
            q = median(r.get("python", {}).get("walls_s", []))
            c32 = median(r.get("patrol_c32", {}).get("walls_s", []))
            lines.append(f"| {n} | {fmt(p)} | {fmt((p - T) * 1000, 1)} ms | {fmt(q)} | {fmt((q - T) * 1000, 1)} ms | "
                         f"{ratio(q, p)} | {ratio(q - T, p - T)} | {fmt(c32)} |")
    if res.get("cold"):
        lines += ["", "### 2. Cold start to result (fresh process each run; median). Limit = the slowest "
                      f"validator: the timeout ({T} s) with the silent quarter, the longest answer delay "
                      f"({args.max_delay_ms} ms) without, 0 with a farm that answers at once", "",
                  "| N | validators | patrol wall s | Python wall s | wall ratio | patrol − limit | Python − limit | "
                  "over-limit ratio | patrol peak RSS MB | Python peak RSS MB | patrol CPU s | Python CPU s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for n, r in res["cold"].items():
            for variant, v in r.items():
                pw, qw = median([x["wall"] for x in v["patrol"]]), median([x["wall"] for x in v["python"]])
                limit = {"all": T, "answering": args.max_delay_ms / 1000.0}.get(variant, 0.0)
                label = {"all": "all N (¼ silent)", "answering": "the answering ¾",
                         "instant": "the answering ¾, 0 ms delay"}.get(variant, variant)
                lines.append(
                    f"| {n} | {label} | {fmt(pw)} | "
                    f"{fmt(qw)} | {ratio(qw, pw)} | {fmt((pw - limit) * 1000, 1)} ms | {fmt((qw - limit) * 1000, 1)} ms | "
                    f"{ratio(qw - limit, pw - limit)} | "
                    f"{fmt(median([x['maxrss_mb'] for x in v['patrol']]), 1)} | "
                    f"{fmt(median([x['maxrss_mb'] for x in v['python']]), 1)} | "
                    f"{fmt(median([x['cpu_s'] for x in v['patrol']]), 3)} | "
                    f"{fmt(median([x['cpu_s'] for x in v['python']]), 3)} |")
    if res.get("reconcile") or res.get("idle"):
        lines += ["", "### 3. Footprint", ""]
    if res.get("reconcile"):
        lines += ["One `patrol reconcile --json` against the farm (fresh state dir each run; median):", "",
                  "| N | wall s | peak RSS MB | CPU s (user+sys) | Python check script peak RSS MB / CPU s "
                  "(reference) |", "|---|---|---|---|---|"]
        for n, runs in res["reconcile"].items():
            py = res.get("cold", {}).get(n, {}).get("all", {}).get("python", [])
            ref = (f"{fmt(median([x['maxrss_mb'] for x in py]), 1)} / {fmt(median([x['cpu_s'] for x in py]), 3)}"
                   if py else "–")
            lines.append(f"| {n} | {fmt(median([x['wall'] for x in runs]))} | "
                         f"{fmt(median([x['maxrss_mb'] for x in runs]), 1)} | "
                         f"{fmt(median([x['cpu_s'] for x in runs]), 3)} | {ref} |")
    if res.get("idle"):
        i = res["idle"]
        lines += ["", f"`patrol run` against a farm of N={i['n']} (concurrency {i.get('concurrency')}) for "
                      f"{i['seconds']:.0f} s (idle window from "
                      f"t={i['idle_from_s']:.0f} s, after the first pass):", "",
                  "| peak RSS MB | RSS at end MB | CPU s total | CPU s first pass | CPU s idle window | idle CPU % | "
                  "context switches/s (idle) | threads |", "|---|---|---|---|---|---|---|---|",
                  f"| {fmt(i['peak_rss_mb'], 1)} | {fmt(i['rss_end_mb'], 1)} | {fmt(i['cpu_total_s'], 3)} | "
                  f"{fmt(i['cpu_first_pass_s'], 3)} | {fmt(i['cpu_idle_s'], 3)} | {fmt(i['cpu_idle_pct'], 4)} | "
                  f"{fmt(i['wakeups_per_s'], 2)} | {i['threads']} |"]
    if res.get("axon"):
        lines += ["", f"### 4. Validator side: verified PatCheckSynapse requests/s (median of {args.axon_reps} × "
                      f"{args.axon_duration} s)", "",
                  "| clients | patrol rps (min–max) | Python rps (min–max) | ratio of medians | patrol p50 / p99 ms | Python p50 / p99 ms | "
                  "patrol server CPU µs/req | Python server CPU µs/req | load generator CPU share (patrol run) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c, r in res["axon"].items():
            p, q = r["patrol"], r["python"]

            def med(xs, k):
                return median([x[k] for x in xs])
            def rng(xs, d):
                v = [x["rps"] for x in xs]
                return f" ({min(v):.{d}f}–{max(v):.{d}f})" if len(v) > 1 else ""
            lines.append(f"| {c} | {fmt(med(p, 'rps'), 0)}{rng(p, 0)} | {fmt(med(q, 'rps'), 1)}{rng(q, 1)} | "
                         f"{ratio(med(p, 'rps'), med(q, 'rps'))} | {fmt(med(p, 'p50_ms'), 2)} / "
                         f"{fmt(med(p, 'p99_ms'), 2)} | {fmt(med(q, 'p50_ms'), 1)} / {fmt(med(q, 'p99_ms'), 1)} | "
                         f"{fmt(med(p, 'server_cpu_us_per_req'), 0)} | {fmt(med(q, 'server_cpu_us_per_req'), 0)} | "
                         f"{fmt(100 * med(p, 'loadgen_share'), 0)} % |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    for k in ("patrol", "farm", "fanout", "load", "py", "out"):
        ap.add_argument(f"--{k}", required=True)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--ns", default="16 64 256")
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=0, help="patrol's [reconcile] concurrency; 0 = N")
    ap.add_argument("--dead-fraction", type=float, default=0.25)
    ap.add_argument("--min-delay-ms", type=int, default=5)
    ap.add_argument("--max-delay-ms", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--idle-secs", type=float, default=600)
    ap.add_argument("--idle-warmup", type=float, default=30, help="seconds of `patrol run` not counted as idle")
    ap.add_argument("--idle-concurrency", type=int, default=0, help="[reconcile] concurrency of `patrol run`; 0 = N")
    ap.add_argument("--axon-duration", type=float, default=10)
    ap.add_argument("--axon-warmup", type=float, default=1)
    ap.add_argument("--axon-reps", type=int, default=3)
    ap.add_argument("--axon-concurrency", default="1 16 64")
    ap.add_argument("--only", default="fanout cold footprint axon")
    args = ap.parse_args()
    args.ns_list = [int(x) for x in args.ns.split()]
    args.axon_concurrency = [int(x) for x in args.axon_concurrency.split()]
    only = set(args.only.split())
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    os.makedirs(args.out, exist_ok=True)
    args.work = tempfile.mkdtemp(prefix="patrol-bench-")
    args.wallets = os.path.join(args.work, "wallets")
    os.makedirs(os.path.join(args.wallets, "bench", "hotkeys"))
    with open(os.path.join(args.wallets, "bench", "hotkeys", "default"), "w") as fh:
        json.dump(MINER_KEYFILE, fh)
    os.chmod(os.path.join(args.wallets, "bench", "hotkeys", "default"), 0o600)
    args.pat_file = os.path.join(args.work, "github-pat")
    with open(args.pat_file, "w") as fh:
        fh.write("ghp_bench" + os.urandom(16).hex() + "\n")  # never sent: the farm answers `valid`
    os.chmod(args.pat_file, 0o600)
    log(f"work dir {args.work}; results in {args.out}")
    res = {"machine": machine(args), "settings": {k: v for k, v in vars(args).items() if k != "ns_list"}}
    try:
        idle = None
        if "footprint" in only and args.idle_secs > 0:
            idle = IdleRun(args, max(args.ns_list))
            time.sleep(min(args.idle_warmup, 10))
        for n in args.ns_list:
            if not only & {"fanout", "cold", "footprint"}:
                break
            farm = Farm(args, n, args.dead_fraction, str(n))
            try:
                if "fanout" in only:
                    res.setdefault("fanout", {})[str(n)] = bench_fanout(args, farm, n)
                if "cold" in only:
                    res.setdefault("cold", {})[str(n)] = bench_cold(args, farm, n)
                if "footprint" in only:
                    res.setdefault("reconcile", {})[str(n)] = bench_reconcile(args, farm, n)
            finally:
                farm.close()
        if "axon" in only:
            res["axon"] = bench_axon(args)
        if idle is not None:
            res["idle"] = idle.finish()
        res["loadavg_end"] = os.getloadavg()
    finally:
        cleanup()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(args.work, ignore_errors=True)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(res, fh, indent=1, default=str)
    text = report(args, res)
    with open(os.path.join(args.out, "results.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
