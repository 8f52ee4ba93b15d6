#!/usr/bin/env python3
"""Scaling across cores: GoKV --shards N beside Redis 7 (and Valkey) io-threads K.

Run through scripts/bench-scaling.sh, which finds the binaries (GOKV_BIN, LOADTEST_BIN,
REDIS_BIN, VALKEY_BIN, or a release build) and stops everything this script started, however
it ends. Python 3 standard library; matplotlib (optional) for the PNG.

The machine's CPUs (those this process may run on) are split in two: a server gets the first
N (N = GoKV's shard count, or Redis's io-threads), `gokv-loadtest` the rest, each pinned with
`taskset -c`. A configuration that leaves fewer than --min-load-cores CPUs to the client is
skipped and named in the report. Physical cores come before their hyperthread siblings in
that order, so that a small server gets whole cores.

For every configuration and round: start the server (127.0.0.1, persistence off), fill the
key space (not measured), then SET and GET, each at -P 1 and -P 16, each for --duration, and
stop it. Rounds repeat the whole sequence, so servers alternate (GoKV s1, s2, ..., Redis io1,
io4, ..., Valkey ...) and machine load hits all of them alike; the report gives medians and the
min-max spread.

GoKV gets one partition per shard (`p0` .. `p<N-1>`; a new partition goes to the shard with
the fewest, checked with DESCRIBE PARTITION) and the client sends each connection's requests
to one of them (`--partition-per-connection`), so that GoKV moves every connection to its
partition's shard: the all-local case, the one thread-per-core is built for. `--spread` adds
rows where each request draws its partition (N-1 of N requests cross a shard).

Server CPU per operation: utime + stime of the server process (/proc/<pid>/stat, every thread)
before and after a run, divided by the requests; "cores busy" is that CPU time over the run's
wall time (server), and the client's own CPU time (getrusage of the child) over the wall time
(client): a client near its CPU count means the figure is the client's limit, not the
server's.
"""

import argparse
import csv
import datetime
import json
import os
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no scripts/__pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_redis import (CLK_TCK, Ports, RunFailed, Server, encode,  # noqa: E402
                            interrupt_on_signals, loadavg, shell_line, stop_all)

TESTS = (("SET", 1), ("GET", 1), ("SET", 16), ("GET", 16))
VALKEY_HOWTO = (
    "Valkey: skipped (no VALKEY_BIN / --valkey-bin given). To add it, build Valkey on a machine "
    "with network (`make BUILD_TLS=no` in a Valkey source tree, or install the `valkey-server` "
    "package where the distribution has one), copy `src/valkey-server` (and the shared "
    "libraries `ldd` lists that the target lacks) with the other binaries, and run "
    "`VALKEY_BIN=/path/valkey-server scripts/bench-scaling.sh`.")


# ---------------------------------------------------------------------------------------------
# CPUs


def cpu_order():
    """The CPUs this process may use, physical cores first: a CPU's rank among its core's
    hyperthreads, then package and core id (from /sys; plain CPU order when it is missing)."""
    cpus = sorted(os.sched_getaffinity(0))
    seen = {}
    keyed = []
    for cpu in cpus:
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        try:
            with open(base + "core_id") as f:
                core = int(f.read())
            with open(base + "physical_package_id") as f:
                pkg = int(f.read())
        except (OSError, ValueError):
            core, pkg = cpu, 0
        rank = seen.get((pkg, core), 0)
        seen[(pkg, core)] = rank + 1
        keyed.append(((rank, pkg, core, cpu), cpu))
    return [cpu for _, cpu in sorted(keyed)]


def cpu_list(cpus):
    """`taskset -c` syntax: 0-3,8."""
    cpus = sorted(cpus)
    out, start = [], None
    for i, c in enumerate(cpus):
        if start is None:
            start = c
        if i + 1 == len(cpus) or cpus[i + 1] != c + 1:
            out.append(str(start) if start == c else f"{start}-{c}")
            start = None
    return ",".join(out)


# ---------------------------------------------------------------------------------------------
# a few RESP calls (no redis-cli: the machine this runs on may have only the binaries)


def read_reply(f):
    line = f.readline()
    if not line:
        raise RunFailed("connection closed before a reply")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind in (b"+", b":", b"-", b",", b"#", b"_"):
        return rest.decode(errors="replace") if kind != b"-" else RunFailed(rest.decode())
    if kind in (b"$", b"=", b"!"):
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:n]
        return data.decode(errors="replace")
    if kind in (b"*", b"~", b">", b"%"):
        n = int(rest)
        if n < 0:
            return None
        return [read_reply(f) for _ in range(n * (2 if kind == b"%" else 1))]
    raise RunFailed(f"unexpected reply line {line!r}")


def call(port, auth, *args):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")
        if auth:
            s.sendall(encode(["AUTH", auth[0], auth[1]]))
            r = read_reply(f)
            if isinstance(r, RunFailed):
                raise RunFailed(f"AUTH on port {port}: {r}")
        s.sendall(encode(list(args)))
        r = read_reply(f)
        if isinstance(r, RunFailed):
            raise RunFailed(f"{' '.join(map(str, args))} on port {port}: {r}")
        return r


# ---------------------------------------------------------------------------------------------
# servers


class Config:
    """One server configuration: GoKV with `cores` shards, or Redis/Valkey with `cores`
    io-threads; `spread` (GoKV): every request draws its partition."""

    def __init__(self, kind, cores, spread=False):
        self.kind, self.cores, self.spread = kind, cores, spread

    @property
    def name(self):
        if self.kind == "gokv":
            return f"GoKV --shards {self.cores}" + (" (spread)" if self.spread else "")
        return f"{'Redis' if self.kind == 'redis' else 'Valkey'} io-threads {self.cores}"

    @property
    def family(self):
        return "GoKV spread" if self.spread else {"gokv": "GoKV", "redis": "Redis",
                                                  "valkey": "Valkey"}[self.kind]


class Bench:
    def __init__(self, args, state):
        self.args, self.state = args, state
        self.pidfile = os.path.join(state, "pids")
        self.ports = Ports(args.port_base, args.port_limit)
        help_text = subprocess.run([args.gokv_bin, "--help"], capture_output=True,
                                   text=True).stdout
        self.gokv_auth = ("admin", secrets.token_hex(12)) \
            if "--admin-password" in help_text else None
        self.gokv_metrics_off = "--metrics-port" in help_text
        self.valkey_no_do_reads = False  # set when a Valkey refuses io-threads-do-reads
        self.commands = {}  # (config name, what) -> the exact command, password as <pw>
        self.notes = []

    def redact(self, argv):
        pw = self.gokv_auth[1] if self.gokv_auth else None
        return ["<pw>" if a == pw else a for a in argv]

    def start(self, cfg, server_cpus, tag):
        port = self.ports.take()
        pin = ["taskset", "-c", cpu_list(server_cpus)]
        log = os.path.join(self.state, f"{tag}.log")
        if cfg.kind == "gokv":
            data = tempfile.mkdtemp(prefix=f"{tag}-", dir=self.state)
            argv = pin + [self.args.gokv_bin, "--bind", "127.0.0.1", "--port", str(port),
                          "--data-dir", data, "--shards", str(cfg.cores)]
            if self.gokv_metrics_off:
                argv += ["--metrics-port", "0"]
            if self.gokv_auth:
                argv += ["--admin-password", self.gokv_auth[1]]
            server = Server(cfg.name, "gokv", argv, port, log, self.pidfile, self.gokv_auth)
            self.commands.setdefault((cfg.name, "server"), shell_line(self.redact(argv)))
            self.gokv_partitions(server, cfg.cores)
            return server
        binary = self.args.redis_bin if cfg.kind == "redis" else self.args.valkey_bin
        argv = pin + [binary, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode",
                      "yes", "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir",
                      self.state, "--io-threads", str(cfg.cores)]
        do_reads = ["--io-threads-do-reads", "yes"]
        plain = argv
        if not (cfg.kind == "valkey" and self.valkey_no_do_reads):
            argv = argv + do_reads
        try:
            server = Server(cfg.name, cfg.kind, argv, port, log, self.pidfile, None)
        except RuntimeError as e:
            # Valkey 8 reads with its I/O threads anyway; a build that dropped the deprecated
            # setting refuses it: start once more without it.
            if cfg.kind != "valkey" or self.valkey_no_do_reads:
                raise RunFailed(str(e))
            self.valkey_no_do_reads = True
            why = " ".join(str(e).split())[-160:]
            self.notes.append(f"{binary} refused `io-threads-do-reads yes` (...{why}): Valkey "
                              "started without it")
            argv = plain
            server = Server(cfg.name, cfg.kind, argv, port, log, self.pidfile, None)
        self.commands.setdefault((cfg.name, "server"), shell_line(argv))
        return server

    def gokv_partitions(self, server, shards):
        """p0 .. p<shards-1>, one per shard (a new partition goes to the shard with the
        fewest; checked)."""
        for i in range(shards):
            reply = call(server.port, server.auth, "CREATE", "PARTITION", f"p{i}", "STRING",
                         "MEMORY")
            if reply != "OK":
                raise RunFailed(f"CREATE PARTITION p{i} STRING MEMORY: {reply}")
        placed = []
        for i in range(shards):
            d = call(server.port, server.auth, "DESCRIBE", "PARTITION", f"p{i}")
            fields = dict(zip(d[0::2], d[1::2])) if isinstance(d, list) else {}
            placed.append(int(fields.get("shard", -1)))
        if placed != list(range(shards)):
            self.notes.append(f"{server.name}: partitions p0.. landed on shards {placed}, not "
                              "one per shard: its local rows are not all local")

    # -----------------------------------------------------------------------------------------
    # client runs

    def loadtest_argv(self, cfg, server, load_cpus, extra):
        argv = ["taskset", "-c", cpu_list(load_cpus), self.args.loadtest_bin,
                "--host", "127.0.0.1", "--port", str(server.port),
                "--target", "gokv" if cfg.kind == "gokv" else "redis",
                "-c", str(self.args.connections), "-t", str(min(len(load_cpus),
                                                                self.args.connections)),
                "--keys", str(self.args.keys), "--value-size", "32", "--json", "-q"]
        if cfg.kind == "gokv":
            argv += ["--partitions", ",".join(f"p{i}" for i in range(cfg.cores))]
            if not cfg.spread:
                argv += ["--partition-per-connection"]
            if server.auth:
                argv += ["--user", server.auth[0], "--password", server.auth[1]]
        return argv + list(extra)

    def run_client(self, argv):
        """Runs gokv-loadtest; returns (JSON summary, its CPU seconds)."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with open(self.pidfile, "a") as f:
            f.write(f"{p.pid}\n")
        try:
            out, err = p.communicate()
        except BaseException:
            p.kill()
            p.wait()
            raise
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        out, err = out.decode(errors="replace"), err.decode(errors="replace")
        if p.returncode != 0:
            raise RunFailed(f"exit status {p.returncode} from:\n  {shell_line(self.redact(argv))}"
                            f"\nstdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}")
        summary = json.loads(out.strip().splitlines()[-1])
        if not summary["ok"] or summary["errors"]:
            raise RunFailed(f"gokv-loadtest reported errors: {summary.get('fatal')} "
                            f"{summary.get('error_samples')} in:\n  "
                            f"{shell_line(self.redact(argv))}")
        return summary, cpu

    def prefill(self, cfg, server, load_cpus):
        argv = self.loadtest_argv(cfg, server, load_cpus, ["--prefill", "-n", "1"])
        self.run_client(argv)
        self.commands.setdefault((cfg.name, "prefill (not measured)"),
                                 shell_line(self.redact(argv)))

    def measure(self, cfg, server, load_cpus, what, pipe):
        argv = self.loadtest_argv(cfg, server, load_cpus, [
            "--ratio", "0:1" if what == "SET" else "1:0", "-P", str(pipe),
            "--duration", f"{self.args.duration}s"])
        cpu0 = server.cpu()
        summary, client_cpu = self.run_client(argv)
        cpu1 = server.cpu()
        self.commands.setdefault((cfg.name, f"{what} -P {pipe}"), shell_line(self.redact(argv)))
        ops, elapsed = summary["ops"], summary["elapsed_s"]
        return {"ops": summary["ops_per_sec"], "p99_ms": summary["latency_us"]["p99"] / 1000,
                "cpu_us": (cpu1 - cpu0) * 1e6 / ops if ops else 0.0,
                "server_busy": (cpu1 - cpu0) / elapsed if elapsed else 0.0,
                "client_busy": client_cpu / elapsed if elapsed else 0.0}


# ---------------------------------------------------------------------------------------------
# main


def parse_counts(text, flag):
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"{flag}: expected comma-separated numbers, got {text!r}")
    if not counts or min(counts) < 1:
        raise SystemExit(f"{flag}: counts must be at least 1")
    return counts


def main():
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gokv-bin", default=env("GOKV_BIN", "target/release/gokv-server"))
    ap.add_argument("--loadtest-bin", default=env("LOADTEST_BIN", "target/release/gokv-loadtest"))
    ap.add_argument("--redis-bin", default=env("REDIS_BIN") or shutil.which("redis-server"))
    ap.add_argument("--valkey-bin", default=env("VALKEY_BIN"))
    ap.add_argument("--shards", default="1,2,4,8,12", help="GoKV shard counts (default %(default)s)")
    ap.add_argument("--io-threads", default="1,4,8",
                    help="Redis/Valkey io-threads (default %(default)s)")
    ap.add_argument("--rounds", type=int, help="rounds (default 3; --quick 1)")
    ap.add_argument("--duration", type=float, help="seconds per run (default 2; --quick 0.5)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--keys", type=int, help="key space (default 100000; --quick 10000)")
    ap.add_argument("--min-load-cores", type=int, default=1,
                    help="fewest CPUs left to the client; configurations needing more are "
                    "skipped (default %(default)s). 0: a configuration that leaves none runs "
                    "with the client on every CPU, sharing the server's (marked `shared`: a "
                    "smoke test of the path, not a scaling point)")
    ap.add_argument("--spread", action="store_true",
                    help="also GoKV with every request drawing its partition (cross-shard)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, 0.5 s runs")
    ap.add_argument("--no-redis", action="store_true", help="GoKV only")
    ap.add_argument("--port-base", type=int, default=7900)
    ap.add_argument("--port-limit", type=int, default=7999)
    ap.add_argument("--out-dir", default="bench-results")
    ap.add_argument("--state-dir", help="scratch directory (default: a new temporary one)")
    ap.add_argument("--no-chart", action="store_true")
    args = ap.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (0.5 if args.quick else 2.0)
    args.keys = args.keys or (10_000 if args.quick else 100_000)
    if args.rounds < 1 or args.duration <= 0 or args.connections < 1 or args.min_load_cores < 0:
        ap.error("--rounds, --duration and --connections must be positive, --min-load-cores "
                 "at least 0")
    for flag, path in (("--gokv-bin/GOKV_BIN", args.gokv_bin),
                       ("--loadtest-bin/LOADTEST_BIN", args.loadtest_bin)):
        if not (path and os.access(path, os.X_OK)):
            ap.error(f"{flag}: no executable at {path!r}")
    if not args.no_redis and not (args.redis_bin and os.access(args.redis_bin, os.X_OK)):
        ap.error("no redis-server: give REDIS_BIN=/path/redis-server (or --no-redis)")
    if args.valkey_bin and not os.access(args.valkey_bin, os.X_OK):
        ap.error(f"VALKEY_BIN/--valkey-bin: no executable at {args.valkey_bin!r}")
    if not shutil.which("taskset"):
        ap.error("taskset (util-linux) is missing: it pins the server and the client")

    state = args.state_dir or tempfile.mkdtemp(prefix="gokv-scaling-")
    interrupt_on_signals()
    try:
        return bench(args, state, parse_counts(args.shards, "--shards"),
                     parse_counts(args.io_threads, "--io-threads"))
    except (RunFailed, RuntimeError) as e:  # RuntimeError: a server that would not start
        print(f"\nFAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"\ninterrupted ({e or 'Ctrl-C'}); stopping the servers", file=sys.stderr)
        return 130
    finally:
        stop_all()
        if not args.state_dir:
            shutil.rmtree(state, ignore_errors=True)


def version(binary):
    p = subprocess.run([binary, "--version"], capture_output=True, text=True)
    return (p.stdout.strip() or p.stderr.strip()).splitlines()[0] if p.returncode == 0 else "?"


def bench(args, state, shard_counts, io_counts):
    t_start = time.time()
    order = cpu_order()
    ncpu = len(order)
    b = Bench(args, state)
    configs, skipped = [], []

    def fits(cores):
        return cores <= ncpu and cores + args.min_load_cores <= ncpu

    for s in shard_counts:
        if fits(s):
            configs.append(Config("gokv", s))
            if args.spread and s > 1:
                configs.append(Config("gokv", s, spread=True))
        else:
            skipped.append(f"GoKV --shards {s}")
    kinds = ([] if args.no_redis else ["redis"]) + (["valkey"] if args.valkey_bin else [])
    for kind in kinds:
        for k in io_counts:
            if fits(k):
                configs.append(Config(kind, k))
            else:
                skipped.append(f"{'Redis' if kind == 'redis' else 'Valkey'} io-threads {k}")
    if not configs:
        raise RunFailed(f"nothing fits on {ncpu} CPUs with --min-load-cores "
                        f"{args.min_load_cores}")
    machine = {
        "cpus": ncpu, "order": cpu_list(order), "model": cpu_model(),
        "kernel": os.uname().release, "load_before": loadavg(),
        "gokv": version(args.gokv_bin),
        "redis": version(args.redis_bin) if not args.no_redis else "not run",
        "valkey": version(args.valkey_bin) if args.valkey_bin else None,
        "threads_per_core": threads_per_core(),
    }
    per_instance = 4 * (args.duration + 0.4) + 1.5
    print(f"machine: {ncpu} CPUs ({machine['model']}, {machine['threads_per_core']} thread(s) "
          f"per core), load average {machine['load_before']}; {len(configs)} configurations x "
          f"{args.rounds} round(s), about {per_instance * len(configs) * args.rounds:.0f} s",
          flush=True)
    if per_instance * len(configs) * args.rounds > 480:
        print("warning: that is over 8 minutes; --rounds 2, a shorter --duration or fewer "
              "--shards/--io-threads bring it down", flush=True)
    if skipped:
        print(f"skipped (server CPUs + {args.min_load_cores} for the client > {ncpu}): "
              + ", ".join(skipped), flush=True)
    if not args.valkey_bin:
        print(VALKEY_HOWTO, flush=True)

    results = {}  # (config name, test) -> [run]
    layout = {}
    for rnd in range(1, args.rounds + 1):
        print(f"round {rnd}/{args.rounds} (load average {loadavg()})", flush=True)
        for ci, cfg in enumerate(configs):
            server_cpus, load_cpus = order[:cfg.cores], order[cfg.cores:]
            shared = not load_cpus  # only with --min-load-cores 0
            if shared:
                load_cpus = order
            layout[cfg.name] = (cpu_list(server_cpus),
                                cpu_list(load_cpus) + (" (shared)" if shared else ""))
            server = b.start(cfg, server_cpus, f"r{rnd}-c{ci}")
            try:
                b.prefill(cfg, server, load_cpus)
                for what, pipe in TESTS:
                    r = b.measure(cfg, server, load_cpus, what, pipe)
                    results.setdefault((cfg.name, (what, pipe)), []).append(r)
                    print(f"  {cfg.name:26} {what} -P {pipe:<2} {r['ops']:>12,.0f} ops/s  "
                          f"p99 {r['p99_ms']:7.3f} ms  {r['cpu_us']:6.2f} us/op  server "
                          f"{r['server_busy']:4.1f} / client {r['client_busy']:4.1f} cores",
                          flush=True)
            finally:
                server.stop()
    machine["load_after"] = loadavg()
    machine["seconds"] = time.time() - t_start

    rows = summarize(configs, results, layout)
    report = render(args, machine, configs, skipped, rows, b)
    print()
    print(report)
    os.makedirs(args.out_dir, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(args.out_dir, f"scaling-{stamp}")
    with open(base + ".md", "w") as f:
        f.write(report)
    write_csv(base + ".csv", rows)
    print(f"written: {base}.md, {base}.csv")
    if args.no_chart:
        pass
    elif chart(base + ".png", rows, machine):
        print(f"written: {base}.png")
    return 0


def summarize(configs, results, layout):
    med = statistics.median
    rows = []
    by = {}
    for cfg in configs:
        for what, pipe in TESTS:
            rs = results[(cfg.name, (what, pipe))]
            row = {
                "server": cfg.name, "family": cfg.family, "cores": cfg.cores,
                "server_cpus": layout[cfg.name][0], "load_cpus": layout[cfg.name][1],
                "test": f"{what} -P {pipe}", "rounds": len(rs),
                "ops": med([r["ops"] for r in rs]), "ops_min": min(r["ops"] for r in rs),
                "ops_max": max(r["ops"] for r in rs),
                "p99_ms": med([r["p99_ms"] for r in rs]),
                "cpu_us": med([r["cpu_us"] for r in rs]),
                "server_busy": med([r["server_busy"] for r in rs]),
                "client_busy": med([r["client_busy"] for r in rs]),
            }
            rows.append(row)
            by[(cfg.kind if not cfg.spread else "spread", cfg.cores, row["test"])] = row
    for row in rows:
        if row["family"] == "Redis":
            continue
        base = by.get(("redis", 1, row["test"]))
        same = by.get(("redis", row["cores"], row["test"]))
        row["ops_vs_redis1"] = row["ops"] / base["ops"] if base and base["ops"] else None
        row["ops_vs_redis_same"] = row["ops"] / same["ops"] if same and same["ops"] else None
        row["cpu_vs_redis_same"] = (row["cpu_us"] / same["cpu_us"]
                                    if same and same["cpu_us"] else None)
    return rows


def fmt_ratio(x):
    return f"{x:.2f}x" if x is not None else ""


def render(args, machine, configs, skipped, rows, b):
    lines = []
    w = lines.append
    w(f"# Scaling across cores, {datetime.datetime.now().isoformat(timespec='seconds')}")
    w("")
    w(f"- machine: {machine['cpus']} CPUs ({machine['threads_per_core']} thread(s) per core), "
      f"{machine['model']}, Linux {machine['kernel']}; load average before "
      f"{machine['load_before']}, after {machine['load_after']}; {machine['seconds']:.0f} s")
    w(f"- {machine['gokv']} ({args.gokv_bin}); {machine['redis']}"
      + (f"; {machine['valkey']}" if machine["valkey"] else ""))
    w(f"- {args.rounds} round(s){' (--quick)' if args.quick else ''}, each every configuration "
      f"in turn; {args.duration:g} s per run, gokv-loadtest -c {args.connections}, "
      f"{args.keys:,} keys (filled first), 32-byte values; SET runs are `--ratio 0:1`, GET "
      f"`1:0`. CPU order (physical cores first): {machine['order']}; a server takes the first "
      f"N, the client the rest, each pinned with taskset")
    w("- GoKV: one partition per shard, each connection on one of them "
      "(`--partition-per-connection`), so every request is local once GoKV has moved the "
      "connection" + ("; *spread* rows: each request draws its partition" if args.spread else ""))
    w("- Redis/Valkey: `--io-threads N --io-threads-do-reads yes`, persistence off")
    w("- ops/s: median (min–max) over the rounds; p99, CPU µs/op (server utime+stime per "
      "request), cores busy (CPU seconds per second of the run, server and client): medians. "
      "vs Redis 1: ops/s over Redis io-threads 1's; same cores: over Redis with as many "
      "io-threads as the row has cores (where run)")
    w("")
    if skipped:
        w(f"Skipped (fewer than {args.min_load_cores} CPU(s) left for the client on "
          f"{machine['cpus']}): {', '.join(skipped)}.")
        w("")
    if not machine["valkey"]:
        w(VALKEY_HOWTO)
        w("")
    for note in b.notes:
        w(f"Note: {note}")
        w("")
    w("| server | CPUs server / client | test | ops/s median (min–max) | p99 ms | CPU µs/op "
      "| cores busy server / client | ops/s vs Redis 1 | ops/s vs Redis same cores "
      "| CPU/op vs Redis same cores |")
    w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        w(f"| {r['server']} | {r['server_cpus']} / {r['load_cpus']} | {r['test']} | "
          f"{r['ops']:,.0f} ({r['ops_min']:,.0f}–{r['ops_max']:,.0f}) | {r['p99_ms']:.3f} | "
          f"{r['cpu_us']:.2f} | {r['server_busy']:.2f} / {r['client_busy']:.2f} | "
          f"{fmt_ratio(r.get('ops_vs_redis1'))} | {fmt_ratio(r.get('ops_vs_redis_same'))} | "
          f"{fmt_ratio(r.get('cpu_vs_redis_same'))} |")
    w("")
    tick_us = 1e6 / CLK_TCK
    w(f"CPU resolution: one clock tick is {tick_us:.0f} µs of CPU; over a {args.duration:g} s run "
      f"at the slowest rate above that is "
      f"{tick_us / max(1.0, min(r['ops'] for r in rows) * args.duration):.3f} µs/op.")
    w("")
    w("## Commands")
    w("")
    w("```sh")
    w("# this report:")
    w(" ".join(["scripts/bench-scaling.sh"] + (["--quick"] if args.quick else [])
               + [f"--shards {args.shards}", f"--io-threads {args.io_threads}",
                  f"--rounds {args.rounds}", f"--duration {args.duration:g}"]
               + (["--spread"] if args.spread else [])))
    for (name, what), cmd in b.commands.items():
        w(f"# {name}: {what}")
        w(cmd)
    w("```")
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("server", "family", "cores", "server_cpus", "load_cpus", "test", "rounds", "ops",
              "ops_min", "ops_max", "p99_ms", "cpu_us", "server_busy", "client_busy",
              "ops_vs_redis1", "ops_vs_redis_same", "cpu_vs_redis_same")


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        wr.writeheader()
        for r in rows:
            wr.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v)
                         for k, v in r.items()})


def chart(png, rows, machine):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG (pip install matplotlib; the table and the "
              "CSV are complete without it)", file=sys.stderr)
        return False
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    styles = {"GoKV": "o-", "GoKV spread": "o:", "Redis": "s--", "Valkey": "^-."}
    for col, pipe in enumerate((1, 16)):
        for row_i, (field, label) in enumerate((("ops", "ops/s"),
                                                ("cpu_us", "server CPU µs per op"))):
            ax = axes[row_i][col]
            for family in ("GoKV", "GoKV spread", "Redis", "Valkey"):
                for what in ("SET", "GET"):
                    pts = sorted((r["cores"], r[field]) for r in rows
                                 if r["family"] == family and r["test"] == f"{what} -P {pipe}")
                    if pts:
                        ax.plot([p[0] for p in pts], [p[1] for p in pts], styles[family],
                                label=f"{family} {what}", alpha=0.9 if what == "SET" else 0.6)
            ax.set_title(f"{label}, -P {pipe}")
            ax.set_xlabel("server cores (GoKV shards / Redis io-threads)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            ax.set_ylim(bottom=0)
            ax.set_xticks(sorted({r["cores"] for r in rows}))
            ax.legend(fontsize=7)
    fig.suptitle(f"GoKV vs Redis across cores ({machine['cpus']} CPUs, {machine['model']}, "
                 f"load {machine['load_before']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return True


def threads_per_core():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Thread(s) per core:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown cpu"


if __name__ == "__main__":
    sys.exit(main())
