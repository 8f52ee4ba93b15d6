#!/usr/bin/env python3
"""GoKV vs Redis 7, side by side, interleaved rounds (method: scripts/README.md).

Run through scripts/bench-vs-redis.sh, which installs redis, builds the release binaries and
cleans up after this script. Python 3 standard library only; matplotlib (optional) for the chart.

What it does:
  * starts GoKV with --shards 1, GoKV with --shards 2 and Redis 7 (persistence off), all on
    127.0.0.1, and stops them on exit;
  * runs the scenarios in interleaved rounds (every round runs every scenario against every
    server in turn), then reports per scenario and server the median ops/s with the min-max
    spread, the median p99, and the server CPU per operation (utime+stime of the server process
    from /proc/<pid>/stat, before and after each run, divided by the requests);
  * memory: loads N keys into fresh servers and reports RSS growth and bytes per key;
  * the Redis face (scenario 7): redis-benchmark's plain `SET key v` / `GET key`, no
    partition word, as a GoKV user bound to partition `bench` (CREATE USER ... DEFAULT
    bench), beside the partition-first form (scenarios 1 and 2) and Redis in the same rounds;
  * prints one markdown table, the machine and the exact commands, and writes them to
    bench-results/<timestamp>.md with a PNG bar chart of the ratios next to it.
"""

import argparse
import csv
import datetime
import io
import itertools
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
VALUE32 = "x" * 32  # the same bytes gokv-loadtest --value-size 32 sends
KEYSPACE = 100_000
CONNS = 50


# ---------------------------------------------------------------------------------------------
# processes


def proc_cpu_seconds(pid):
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state), so field N is fields[N - 3].
    return (int(fields[14 - 3]) + int(fields[15 - 3])) / CLK_TCK


def proc_rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Ports:
    """Hands out free ports from [base, limit]."""

    def __init__(self, base, limit):
        self.next, self.limit = base, limit

    def take(self):
        while self.next <= self.limit:
            port = self.next
            self.next += 1
            if port_free(port):
                return port
        raise RuntimeError(f"no free port left up to {self.limit}")


class Server:
    """A server process this script started; `stop()` ends it (SIGTERM, then SIGKILL)."""

    registry = []  # every server running, so that cleanup can find them all
    started = []  # the command line of every server started, for the report

    def __init__(self, name, kind, argv, port, log_path, pidfile, auth):
        self.name, self.kind, self.argv, self.port, self.auth = name, kind, argv, port, auth
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)  # Ctrl-C in the terminal reaches us, and we stop them
        self.pid = self.proc.pid
        Server.registry.append(self)
        Server.started.append(argv)
        with open(pidfile, "a") as f:
            f.write(f"{self.pid}\n")
        self._wait_ready(log_path)

    def _wait_ready(self, log_path):
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited at start (status {self.proc.returncode}); "
                    f"log {log_path}:\n{tail(log_path)}")
            try:
                reply = resp_call(self.port, ["PING"], self.auth, timeout=1)
                if reply.startswith(b"+PONG"):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not answering PING on port {self.port} after 20 s")

    def cpu(self):
        return proc_cpu_seconds(self.pid)

    def rss(self):
        return proc_rss_bytes(self.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self in Server.registry:
            Server.registry.remove(self)


def interrupt_on_signals():
    """SIGTERM and SIGHUP raise KeyboardInterrupt, so that the caller's `finally` stops the
    servers (they run in their own sessions: nothing else would). After the first signal
    the rest are ignored, so that a second one cannot cut that clean-up short."""
    def on_signal(signum, _frame):
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


def stop_all():
    for s in list(Server.registry):
        try:
            s.stop()
        except Exception as e:  # keep stopping the others
            print(f"warning: could not stop {s.name} (pid {s.pid}): {e}", file=sys.stderr)


def tail(path, n=20):
    try:
        with open(path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------------------
# a minimal RESP client (set-up and the memory loader)


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def auth_args(auth):
    return ["AUTH", auth[0], auth[1]] if auth else None


def resp_call(port, args, auth, timeout=10):
    """One command on a fresh connection (after AUTH); returns the raw first line/bulk."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        f = s.makefile("rb")
        if auth:
            s.sendall(encode(auth_args(auth)))
            line = f.readline()
            if not line.startswith(b"+"):
                raise RunFailed(f"AUTH failed on port {port}: {line!r}")
        s.sendall(encode(args))
        return f.readline()


def load_keys(port, auth, commands, batch=2000):
    """Sends `commands` (arg lists: a list, or any iterable, e.g. a generator for millions of
    keys) pipelined in batches; every reply must be a one-line non-error reply (+OK or :n).
    Returns the number of requests."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb", buffering=1 << 20)
        if auth:
            s.sendall(encode(auth_args(auth)))
            line = f.readline()
            if not line.startswith(b"+"):
                raise RunFailed(f"AUTH failed on port {port}: {line!r}")
        sent = 0
        commands = iter(commands)
        while True:
            chunk = list(itertools.islice(commands, batch))
            if not chunk:
                break
            s.sendall(b"".join(encode(c) for c in chunk))
            for _ in chunk:
                line = f.readline()
                if not line or line[:1] not in (b"+", b":"):
                    raise RunFailed(f"load on port {port}: unexpected reply {line!r}")
            sent += len(chunk)
        return sent


# ---------------------------------------------------------------------------------------------
# runs


class RunFailed(RuntimeError):
    pass


def run_measured(server, argv, env=None):
    """Runs a client command, measuring the server's CPU around it. Returns (stdout, cpu_s)."""
    cpu0 = server.cpu()
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    cpu1 = server.cpu()
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    if p.returncode != 0:
        raise RunFailed(f"exit status {p.returncode} from:\n  {shell_line(argv)}\n"
                        f"stdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}")
    if "Error from server" in err or "Error from server" in out:
        raise RunFailed(f"error reply from the server in:\n  {shell_line(argv)}\n{err[-2000:]}")
    return out, cpu1 - cpu0


def shell_line(argv):
    return " ".join(shlex.quote(a) for a in argv)


def rb_command(test, kind):
    """The redis-benchmark arguments of `test` ("set", "get", "ping", "echo", "incr",
    "mset10", "mget10", "expire", "publish") against a server of `kind`: GoKV gets the
    partition word, Redis the same command without it. redis-benchmark draws each
    `__rand_int__` of a command on its own, so MSET/MGET touch 10 random keys.
    `echo` sends and receives the same bytes as `get` (a 32-byte argument and reply) and
    touches no data: the null path, parsed, dispatched and answered, that `get` is measured
    against. Shared with bench_ab.py."""
    part = lambda name: [name] if kind == "gokv" else []  # noqa: E731
    return {
        "set": ["SET"] + part("bench") + ["key:__rand_int__", VALUE32],
        "get": ["GET"] + part("bench") + ["key:__rand_int__"],
        "ping": ["-t", "ping_mbulk"],
        "echo": ["ECHO", VALUE32],
        "incr": ["INCR"] + part("counters") + ["ctr:__rand_int__"],
        "mset10": ["MSET"] + part("bench") + [w for _ in range(10)
                                               for w in ("key:__rand_int__", VALUE32)],
        "mget10": ["MGET"] + part("bench") + ["key:__rand_int__"] * 10,
        "expire": ["EXPIRE"] + part("bench") + ["key:__rand_int__", "100000"],
        "publish": ["PUBLISH", "bench-channel", VALUE32],
    }[test]


def redis_benchmark(server, n, pipeline, command, auth, keyspace=KEYSPACE, extra=()):
    """redis-benchmark with --csv; `command` is a list of args, or ['-t', test]; `extra`
    goes before it (e.g. ['--dbnum', '1'])."""
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.port), "-c", str(CONNS),
            "-n", str(n), "-r", str(keyspace), "-P", str(pipeline), "--csv"]
    if auth:
        argv += ["--user", auth[0], "-a", auth[1]]
    argv += list(extra)
    argv += command
    out, cpu = run_measured(server, argv)
    rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0] != "test"]
    if len(rows) != 1:
        raise RunFailed(f"expected one CSV result row from:\n  {shell_line(argv)}\ngot:\n{out}")
    head = next(csv.reader(io.StringIO(out)))
    row = dict(zip(head, rows[0]))
    return {"ops": float(row["rps"]), "p99_ms": float(row["p99_latency_ms"]),
            "cpu_us": cpu * 1e6 / n, "argv": argv}


def run_loadtest(server, argv):
    """Runs a gokv-loadtest command with --json against `server`; any error reply or failure
    fails the run. Returns (its JSON summary, the server's CPU seconds over the run)."""
    out, cpu = run_measured(server, argv)
    summary = json.loads(out.strip().splitlines()[-1])
    if not summary["ok"] or summary["errors"]:
        raise RunFailed(f"gokv-loadtest reported errors: {summary.get('fatal')} "
                        f"{summary.get('error_samples')} in:\n  {shell_line(argv)}")
    return summary, cpu


def loadtest(bin_path, server, target, n, pipeline, partitions, auth, extra=()):
    argv = [bin_path, "--target", target, "--port", str(server.port), "-c", str(CONNS),
            "-P", str(pipeline), "-n", str(n), "--keys", str(KEYSPACE), "--value-size", "32",
            "--ratio", "1:1", "--json", "-q"]
    if target == "gokv":
        argv += ["--partitions", ",".join(partitions)]
    if auth and target == "gokv":
        argv += ["--user", auth[0], "--password", auth[1]]
    argv += list(extra)
    summary, cpu = run_loadtest(server, argv)
    return {"ops": summary["ops_per_sec"], "p99_ms": summary["latency_us"]["p99"] / 1000,
            "cpu_us": cpu * 1e6 / summary["ops"], "argv": argv}


# ---------------------------------------------------------------------------------------------
# servers: GoKV and Redis on 127.0.0.1, free ports, data in the scratch directory


class Launcher:
    """Starts GoKV and Redis the way every benchmark here does, and talks to them with
    redis-cli. Shared by bench_vs_redis.py and bench_expiry.py.

    When `gokv-server --help` mentions `--admin-password`, GoKV gets a random password and
    `auth` is ("admin", password) (None otherwise); `commands` collects the set-up commands
    for the report, the password shown as <pw>."""

    def __init__(self, gokv_bin, state, pidfile, ports):
        self.gokv_bin, self.state, self.pidfile, self.ports = gokv_bin, state, pidfile, ports
        help_text = subprocess.run([gokv_bin, "--help"], capture_output=True, text=True).stdout
        self.auth = ("admin", secrets.token_hex(12)) if "--admin-password" in help_text else None
        self.commands = {}

    def gokv(self, shards, tag):
        port = self.ports.take()
        data = tempfile.mkdtemp(prefix=f"gokv-{tag}-", dir=self.state)
        argv = [self.gokv_bin, "--port", str(port), "--data-dir", data, "--shards", str(shards)]
        if self.auth:
            argv += ["--admin-password", self.auth[1]]
        return Server(f"gokv s{shards}", "gokv", argv, port,
                      os.path.join(self.state, f"gokv-{tag}.log"), self.pidfile, self.auth)

    def redis(self, tag):
        port = self.ports.take()
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--dir", self.state]
        return Server("redis", "redis", argv, port,
                      os.path.join(self.state, f"redis-{tag}.log"), self.pidfile, None)

    def redact(self, argv):
        return redact(argv, self.auth)

    def cli(self, server, *cmd):
        argv = ["redis-cli", "-h", "127.0.0.1", "-p", str(server.port)]
        if server.auth:
            argv += ["--user", server.auth[0], "--pass", server.auth[1], "--no-auth-warning"]
        argv += list(cmd)
        p = subprocess.run(argv, capture_output=True, text=True)
        if p.returncode != 0:
            raise RunFailed(f"{shell_line(self.redact(argv))} -> {p.stdout} {p.stderr}")
        return p.stdout.strip()

    def create_partition(self, server, name, schema="STRING"):
        reply = self.cli(server, "CREATE", "PARTITION", name, schema, "MEMORY")
        if reply != "OK":
            raise RunFailed(f"CREATE PARTITION {name} {schema} MEMORY on {server.name}: {reply}")
        self.commands.setdefault(("setup", server.name + " " + name), shell_line(
            ["redis-cli", "-p", str(server.port)]
            + (["--user", "admin", "--pass", "<pw>"] if self.auth else [])
            + ["CREATE", "PARTITION", name, schema, "MEMORY"]))

    def partition_shard(self, server, name):
        lines = self.cli(server, "DESCRIBE", "PARTITION", name).split("\n")
        for i, line in enumerate(lines[:-1]):
            if line.strip() == "shard":
                return int(lines[i + 1])
        raise RunFailed(f"DESCRIBE PARTITION {name}: no shard field in {lines}")


def machine_info():
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "kernel": os.uname().release,
        "redis": subprocess.run(["redis-server", "--version"], capture_output=True,
                                text=True).stdout.strip(),
        "gokv": git_rev(),
        "load_before": loadavg(),
    }


# ---------------------------------------------------------------------------------------------
# main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="short smoke run (small -n)")
    ap.add_argument("--gokv-bin", default="target/release/gokv-server")
    ap.add_argument("--loadtest-bin", default="target/release/gokv-loadtest")
    ap.add_argument("--port-base", type=int, default=7600)
    ap.add_argument("--port-limit", type=int, default=7699)
    ap.add_argument("--out-dir", default="bench-results")
    ap.add_argument("--state-dir", help="scratch directory (default: a new temporary one)")
    ap.add_argument("--mem-keys", type=int, help="keys loaded for the memory scenario")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory scenario")
    ap.add_argument("--memory-only", action="store_true",
                    help="run only the memory scenario (no throughput rounds)")
    ap.add_argument("--no-chart", action="store_true")
    ap.add_argument("--scenarios", help="comma-separated throughput scenario numbers to run, "
                    "e.g. 1,2,7 (default: all; the memory scenario, 6, has --no-memory)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if args.memory_only and args.no_memory:
        ap.error("--memory-only and --no-memory leave nothing to run")

    n_p1 = 20_000 if args.quick else 200_000
    n_p16 = 100_000 if args.quick else 1_000_000
    mem_keys = args.mem_keys or (200_000 if args.quick else 1_000_000)

    state = args.state_dir or tempfile.mkdtemp(prefix="gokv-bench-")
    pidfile = os.path.join(state, "pids")

    interrupt_on_signals()
    try:
        return bench(args, state, pidfile, n_p1, n_p16, mem_keys)
    except RunFailed as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"\ninterrupted ({e or 'Ctrl-C'}); stopping the servers", file=sys.stderr)
        return 130
    finally:
        stop_all()
        if not args.state_dir:
            shutil.rmtree(state, ignore_errors=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def bench(args, state, pidfile, n_p1, n_p16, mem_keys):
    launcher = Launcher(args.gokv_bin, state, pidfile, Ports(args.port_base, args.port_limit))
    auth = launcher.auth
    commands = launcher.commands  # (scenario, server) -> the exact command of its first run
    start_gokv, start_redis = launcher.gokv, launcher.redis
    cli, create_partition = launcher.cli, launcher.create_partition
    partition_shard = launcher.partition_shard

    machine = machine_info()
    print(f"machine: {machine['nproc']} cores ({machine['cpu']}), load average "
          f"{machine['load_before']}; auth {'on (user admin)' if auth else 'off'}", flush=True)

    g1, g2, rd = start_gokv(1, "s1"), start_gokv(2, "s2"), start_redis("main")
    servers = [g1, rd, g2]
    # Scenario 4 needs p0 on shard 0 and p1 on shard 1 of g2: a new partition goes to the
    # shard with the fewest partitions (ties to the lowest id), so create them first, in order.
    create_partition(g2, "p0")
    create_partition(g2, "p1")
    placement = (partition_shard(g2, "p0"), partition_shard(g2, "p1"))
    if placement != (0, 1):
        raise RunFailed(f"expected p0 on shard 0 and p1 on shard 1, got {placement}")
    for g in (g1, g2):
        create_partition(g, "bench")
        create_partition(g, "counters", "INT")
    # Keys for the cross-shard scenario, so that its GETs find values (not timed).
    prefill = [args.loadtest_bin, "--port", str(g2.port), "--partitions", "p0,p1", "--prefill",
               "-n", "1", "-c", "8", "--keys", str(KEYSPACE), "--value-size", "32", "-q"]
    if auth:
        prefill += ["--user", auth[0], "--password", auth[1]]
    if subprocess.run(prefill, stdout=subprocess.DEVNULL).returncode != 0:
        raise RunFailed(f"prefill failed: {shell_line(redact(prefill, auth))}")
    commands[("setup", "gokv s2 prefill p0,p1")] = shell_line(redact(prefill, auth))

    def rb_cmd(server, what):
        return rb_command(what.lower(), server.kind)

    # (scenario label, servers, runner(server) -> result)
    scenarios = []
    # ECHO beside GET at each depth: the null path, measured in the same rounds (the floor).
    for pipe, n, num in ((1, n_p1, 1), (16, n_p16, 2)):
        for what in ("SET", "GET", "ECHO"):
            scenarios.append((f"{num} {what} -P {pipe} (redis-benchmark)", servers,
                              lambda s, w=what, p=pipe, n=n:
                              redis_benchmark(s, n, p, rb_cmd(s, w), s.auth)))
    scenarios.append(("3 PING -P 16 (redis-benchmark)", servers,
                      lambda s: redis_benchmark(s, n_p16, 16, rb_cmd(s, "PING"), s.auth)))
    for label, part in (("local", "p0"), ("cross", "p1")):
        scenarios.append((f"4 SET/GET 1:1 -P 16, all {label}-shard (gokv-loadtest)", [g2],
                          lambda s, part=part: loadtest(args.loadtest_bin, s, "gokv", n_p16, 16,
                                                        [part], auth, ["--conn-shard", "0"])))
    # 9: every other command of the list, and the families that landed since
    # (keyspace: EXPIRE; Pub/Sub: PUBLISH with no subscriber), at both depths.
    for pipe, n in ((1, n_p1), (16, n_p16)):
        for what in ("PING", "INCR", "MSET10", "MGET10", "EXPIRE", "PUBLISH"):
            if what == "PING" and pipe == 16:
                continue  # scenario 3
            scenarios.append((f"9 {what} -P {pipe} (redis-benchmark)", servers,
                              lambda s, w=what, p=pipe, n=n:
                              redis_benchmark(s, n, p, rb_cmd(s, w), s.auth)))
    for pipe, n in ((1, n_p1), (16, n_p16)):
        scenarios.append((f"5 SET/GET 1:1 -P {pipe} (gokv-loadtest)", servers,
                          lambda s, p=pipe, n=n: loadtest(args.loadtest_bin, s, s.kind, n, p,
                                                          ["bench"], auth)))

    # 7: the Redis face. A user bound to `bench` sends what redis-benchmark sends to Redis (no
    # partition word); Redis runs the same command (auth off), in the same rounds.
    face_auth = face_user(launcher, (g1, g2)) if auth else None
    if face_auth:
        for pipe, n, num in ((1, n_p1, 1), (16, n_p16, 2)):
            for what in ("SET", "GET"):
                scenarios.append((f"7 {what} -P {pipe} (redis-benchmark, Redis face)", servers,
                                  lambda s, w=what, p=pipe, n=n:
                                  redis_benchmark(s, n, p, rb_command(w.lower(), "redis"),
                                                  face_auth if s.kind == "gokv" else None)))
        # 8: the same face, driven by gokv-loadtest in its Redis mode (what it sends a Redis
        # server: SET/GET with no partition word), as the face user on GoKV.
        for pipe, n in ((1, n_p1), (16, n_p16)):
            scenarios.append((f"8 SET/GET 1:1 -P {pipe} (gokv-loadtest --target redis, Redis face)",
                              servers,
                              lambda s, p=pipe, n=n: loadtest(
                                  args.loadtest_bin, s, "redis", n, p, [], None,
                                  ["--user", face_auth[0], "--password", face_auth[1]]
                                  if s.kind == "gokv" else [])))
    else:
        print("warning: no Redis-face scenario (GoKV without auth or without CREATE USER ... "
              "DEFAULT)", file=sys.stderr)
    if args.scenarios:
        wanted = {w.strip() for w in args.scenarios.split(",") if w.strip()}
        scenarios = [sc for sc in scenarios if sc[0].split()[0] in wanted]

    results = {}  # (label, server name) -> [run results]
    if args.memory_only:
        scenarios = []
    for rnd in range(1, args.rounds + 1 if scenarios else 1):
        print(f"round {rnd}/{args.rounds} (load average {loadavg()})", flush=True)
        for label, targets, runner in scenarios:
            for s in targets:
                r = runner(s)
                results.setdefault((label, s.name), []).append(r)
                commands.setdefault((label, s.name), shell_line(redact(r["argv"], auth)))
                print(f"  {label:58} {s.name:8} {r['ops']:>11,.0f} ops/s  p99 "
                      f"{r['p99_ms']:7.3f} ms  {r['cpu_us']:6.2f} us/op", flush=True)
    for s in servers:
        s.stop()

    memory = []
    if not args.no_memory:
        memory = memory_scenario(mem_keys, start_gokv, start_redis, create_partition, cli,
                                 commands)

    machine["load_after"] = loadavg()
    report = render(args, machine, auth, scenarios, results, memory, commands, n_p1, n_p16,
                    mem_keys)
    print()
    print(report)
    os.makedirs(args.out_dir, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    md = os.path.join(args.out_dir, f"{stamp}.md")
    png = os.path.join(args.out_dir, f"{stamp}.png")
    with open(md, "w") as f:
        f.write(report)
    print(f"written: {md}")
    if not args.no_chart and chart(png, scenarios, results):
        print(f"written: {png}")
    return 0


def redact(argv, auth):
    """The command as printed: the throwaway passwords (admin's, the face user's) replaced by
    <pw>."""
    secret = {auth[1], FACE_PASSWORD} if auth else set()
    return ["<pw>" if a in secret else a for a in argv]


FACE_USER = "app"
FACE_PASSWORD = secrets.token_hex(12)


def face_user(launcher, gokv_servers):
    """Creates user `app` bound to partition `bench`, with READ and WRITE on it, on each GoKV
    server; returns its credentials, or None when this GoKV has no default partitions."""
    for server in gokv_servers:
        try:
            reply = launcher.cli(server, "CREATE", "USER", FACE_USER, FACE_PASSWORD, "DEFAULT",
                                 "bench")
        except RunFailed:
            return None
        if reply != "OK":
            return None
        for perm in ("READ", "WRITE"):
            if launcher.cli(server, "GRANT", perm, "ON", "bench", "TO", FACE_USER) != "OK":
                raise RunFailed(f"GRANT {perm} ON bench TO {FACE_USER} on {server.name}")
        launcher.commands.setdefault(("setup", server.name + " face user"), shell_line(
            ["redis-cli", "-p", str(server.port), "--user", "admin", "--pass", "<pw>",
             "CREATE", "USER", FACE_USER, "<pw>", "DEFAULT", "bench"])
            + f"  # and GRANT READ, GRANT WRITE ON bench TO {FACE_USER}")
    return (FACE_USER, FACE_PASSWORD)


def memory_scenario(mem_keys, start_gokv, start_redis, create_partition, cli, commands):
    """Loads mem_keys 16-byte keys into a fresh server per (schema, server) pair; reports RSS
    growth and bytes per key."""
    out = []
    string_value = VALUE32.encode()
    for schema, prefix in (("STRING", "key:"), ("INT", "ctr:")):
        keys = [b"%s%012d" % (prefix.encode(), i) for i in range(mem_keys)]  # 16 bytes each
        # INT values: counters well past Redis's shared small integers (0..9999).
        values = ([string_value] * mem_keys if schema == "STRING"
                  else [b"%d" % (1_000_000 + 7 * i) for i in range(mem_keys)])
        for kind in ("gokv", "redis"):
            server = start_gokv(1, f"mem-{schema.lower()}") if kind == "gokv" \
                else start_redis(f"mem-{schema.lower()}")
            try:
                part = [b"mem"] if kind == "gokv" else []
                if kind == "gokv":
                    create_partition(server, "mem", schema)
                cmds = [[b"SET"] + part + [k, v] for k, v in zip(keys, values)]
                time.sleep(0.2)
                rss0, cpu0, t0 = server.rss(), server.cpu(), time.time()
                n = load_keys(server.port, server.auth, cmds)
                t1, cpu1 = time.time(), server.cpu()
                time.sleep(0.5)
                rss1 = server.rss()
                if kind == "gokv":
                    d = cli(server, "DESCRIBE", "PARTITION", "mem").split("\n")
                    stored = int(d[d.index("keys") + 1])
                else:
                    stored = int(cli(server, "DBSIZE"))
                if stored != mem_keys:
                    raise RunFailed(f"{server.name} holds {stored} keys after loading {mem_keys}")
            finally:
                server.stop()
            label = (f"6 memory, {mem_keys:,} keys, "
                     + ("32-byte values" if schema == "STRING" else "integers, INT partition"))
            out.append({"label": label, "server": server.name, "rss0": rss0, "rss1": rss1,
                        "bytes_per_key": (rss1 - rss0) / mem_keys, "cpu_us": (cpu1 - cpu0)
                        * 1e6 / n, "ops": n / (t1 - t0)})
            commands.setdefault((label, server.name),
                                f"python pipelined writer (batches of 2000): SET "
                                f"{'mem ' if kind == 'gokv' else ''}{prefix}<12 digits> "
                                f"{'<32 x>' if schema == 'STRING' else '<integer>'}, "
                                f"{mem_keys:,} keys")
            print(f"  {label:58} {server.name:8} RSS {rss0 / 2**20:7.1f} -> "
                  f"{rss1 / 2**20:7.1f} MiB, {(rss1 - rss0) / mem_keys:6.1f} B/key", flush=True)
    return out


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown cpu"


def git_rev():
    p = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                       text=True)
    return p.stdout.strip() or "unknown"


def med(xs):
    return statistics.median(xs)


def render(args, machine, auth, scenarios, results, memory, commands, n_p1, n_p16, mem_keys):
    lines = []
    w = lines.append
    w(f"# GoKV vs Redis, {datetime.datetime.now().isoformat(timespec='seconds')}")
    w("")
    w(f"- machine: {machine['nproc']} cores, {machine['cpu']}, Linux {machine['kernel']}; "
      f"load average before {machine['load_before']}, after {machine['load_after']}")
    w(f"- GoKV {machine['gokv']} ({args.gokv_bin}), {machine['redis']}; "
      f"auth {'on' if auth else 'off (server has no --admin-password)'}")
    w(f"- {args.rounds} interleaved round(s){' (--quick)' if args.quick else ''}: each round runs "
      f"every scenario against GoKV --shards 1, Redis, GoKV --shards 2 in turn; "
      f"-n {n_p1:,} at -P 1, {n_p16:,} at -P 16, {CONNS} connections, {KEYSPACE:,} keys, "
      f"32-byte values")
    w("- ops/s: median (min-max) over the rounds; p99: median; CPU: server utime+stime per "
      "request (median); ratios: GoKV / Redis medians of the same scenario")
    w("")
    w("| scenario | server | ops/s median (min–max) | p99 ms | server CPU µs/op "
      "| ops/s GoKV/Redis | CPU/op GoKV/Redis | notes |")
    w("|---|---|---|---|---|---|---|---|")
    med_of = {}
    for label, targets, _ in scenarios:
        for s in targets:
            rs = results[(label, s.name)]
            med_of[(label, s.name)] = (med([r["ops"] for r in rs]), med([r["cpu_us"] for r in rs]))
    for label, targets, _ in scenarios:
        for s in targets:
            rs = results[(label, s.name)]
            ops = [r["ops"] for r in rs]
            m_ops, m_cpu = med_of[(label, s.name)]
            thr_ratio = cpu_ratio = ""
            notes = []
            if s.kind == "gokv" and (label, "redis") in med_of:
                r_ops, r_cpu = med_of[(label, "redis")]
                thr_ratio = f"{m_ops / r_ops:.2f}x"
                cpu_ratio = f"{m_cpu / r_cpu:.2f}x" if r_cpu > 0 else "n/a"
            if label.startswith("4 ") and "cross" in label:
                local = next(l for l, _, _ in scenarios if l.startswith("4 ") and "local" in l)
                l_ops, l_cpu = med_of[(local, s.name)]
                notes.append(f"cross/local: ops/s {m_ops / l_ops:.2f}x, CPU/op "
                             f"{m_cpu / l_cpu:.2f}x" if l_cpu > 0 else "cross/local: n/a")
            if label.startswith("4 "):
                notes.append("GoKV only; connections on shard 0, partition on shard "
                             + ("1" if "cross" in label else "0"))
            if " ECHO " in label:
                notes.append("null path: same bytes as GET, no data access")
            if " GET " in label and label[0] in "12" and s.kind == "gokv":
                echo = label.replace(" GET ", " ECHO ")
                e_ops, e_cpu = med_of.get((echo, s.name), (0, 0))
                if e_cpu > 0:
                    notes.append(f"CPU/op GET/ECHO {m_cpu / e_cpu:.2f}x")
            if label.startswith("3 ") and s.kind == "gokv":
                get = next((l for l, _, _ in scenarios if l.startswith("2 GET")), None)
                if get:
                    notes.append(f"GET/PING ops/s {med_of[(get, s.name)][0] / m_ops:.2f}")
            if label.startswith("7 ") and s.kind == "gokv":
                # The same command in the partition-first form: scenario 1 (-P 1) or 2 (-P 16).
                what, pipe = label.split()[1], label.split("-P ")[1].split()[0]
                first = f"{1 if pipe == '1' else 2} {what} -P {pipe} (redis-benchmark)"
                if (first, s.name) in med_of:
                    f_ops, f_cpu = med_of[(first, s.name)]
                    notes.append(f"face/partition-first: ops/s {m_ops / f_ops:.2f}x, CPU/op "
                                 + (f"{m_cpu / f_cpu:.2f}x" if f_cpu > 0 else "n/a"))
                notes.append(f"user '{FACE_USER}' bound to 'bench', no partition word")
            w(f"| {label} | {s.name} | {m_ops:,.0f} ({min(ops):,.0f}–{max(ops):,.0f}) | "
              f"{med([r['p99_ms'] for r in rs]):.3f} | {m_cpu:.2f} | {thr_ratio} | {cpu_ratio} | "
              f"{'; '.join(notes)} |")
    by = {(m["label"], m["server"]): m for m in memory}
    for m in memory:
        ratio = ""
        if m["server"].startswith("gokv"):
            r = by.get((m["label"], "redis"))
            if r and r["bytes_per_key"] > 0:
                ratio = f"bytes/key GoKV/Redis {m['bytes_per_key'] / r['bytes_per_key']:.2f}x"
        w(f"| {m['label']} | {m['server']} | — (load {m['ops']:,.0f}/s) | — | {m['cpu_us']:.2f} "
          f"| | | RSS {m['rss0'] / 2**20:.1f} → {m['rss1'] / 2**20:.1f} MiB, "
          f"**{m['bytes_per_key']:.1f} B/key**{'; ' + ratio if ratio else ''} |")
    w("")
    w(f"CPU resolution: one clock tick ({1e6 / CLK_TCK:.0f} µs) over a run is "
      f"{1e6 / CLK_TCK / n_p1:.2f} µs/op at -n {n_p1:,} and {1e6 / CLK_TCK / n_p16:.2f} µs/op at "
      f"-n {n_p16:,}; smaller differences are noise.")
    w("")
    for line in floor_lines(scenarios, med_of):
        w(line)
    w("")
    w("## Commands")
    w("")
    w("```sh")
    w("# this report (see scripts/README.md):")
    w(f"scripts/bench-vs-redis.sh --rounds {args.rounds}" + (" --quick" if args.quick else "")
      + (" --no-memory" if args.no_memory else f" --mem-keys {mem_keys}"))
    seen = set()
    for argv in Server.started:
        # One line per kind of server; the ports, data dirs and password vary per run.
        key = (os.path.basename(argv[0]),
               argv[argv.index("--shards") + 1] if "--shards" in argv else "")
        if key not in seen:
            seen.add(key)
            w("# server")
            w(shell_line(redact(argv, auth)))
    for (label, server), cmd in commands.items():
        w(f"# {label} [{server}]")
        w(cmd)
    w("```")
    return "\n".join(lines) + "\n"


def floor_lines(scenarios, med_of):
    """The null-path floor, from this run's own ECHO rows: what a GoKV that only frames,
    dispatches and answers costs per request against Redis's GET, next to what GET costs."""
    out = ["Floor, measured in this run: GoKV answering `ECHO <32 bytes>` (the same request and "
           "reply sizes as GET, parsed, dispatched and answered without touching data), "
           "redis-benchmark with the same settings, in the same interleaved rounds. "
           "`null/Redis GET` is that floor as a ratio to Redis's GET; `GET/Redis GET` is "
           "GoKV's own GET; their quotient is GoKV's distance to the floor (1.00x: the data "
           "path costs nothing measurable).", ""]
    rows = []
    for label, targets, _ in scenarios:
        if " ECHO " not in label:
            continue
        get = label.replace(" ECHO ", " GET ")
        if (get, "redis") not in med_of:
            continue
        r_ops, r_cpu = med_of[(get, "redis")]
        for s in targets:
            if s.kind != "gokv" or (get, s.name) not in med_of:
                continue
            e_ops, e_cpu = med_of[(label, s.name)]
            g_ops, g_cpu = med_of[(get, s.name)]
            pipe = label.split("-P ")[1].split()[0]
            if r_cpu > 0 and e_cpu > 0:
                cpu = (f"{e_cpu / r_cpu:.2f}x | {g_cpu / r_cpu:.2f}x | "
                       f"{g_cpu / e_cpu:.2f}x")
            else:
                cpu = "n/a | n/a | n/a"
            rows.append(f"| -P {pipe} | {s.name} | {e_ops / r_ops:.2f}x | {g_ops / r_ops:.2f}x "
                        f"| {cpu} |")
    if not rows:
        return ["Floor: not measured in this run (no ECHO and GET rows for both servers)."]
    out += ["| depth | server | ops/s null/Redis GET | ops/s GET/Redis GET "
            "| CPU/op null/Redis GET | CPU/op GET/Redis GET | CPU/op GET/null |",
            "|---|---|---|---|---|---|---|"]
    return out + rows


def chart(png, scenarios, results):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("warning: matplotlib not available, no chart", file=sys.stderr)
        return False
    labels, series = [], {}
    for label, targets, _ in scenarios:
        names = {s.name for s in targets}
        if "redis" not in names:
            continue
        r = results[(label, "redis")]
        r_ops, r_cpu = med([x["ops"] for x in r]), med([x["cpu_us"] for x in r])
        labels.append(label.split(" (")[0])
        for s in targets:
            if s.kind != "gokv":
                continue
            g = results[(label, s.name)]
            series.setdefault(f"{s.name} ops/s", []).append(med([x["ops"] for x in g]) / r_ops)
            series.setdefault(f"{s.name} CPU/op", []).append(
                med([x["cpu_us"] for x in g]) / r_cpu if r_cpu > 0 else 0)
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(labels)), 5))
    width = 0.8 / max(1, len(series))
    for i, (name, vals) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, vals, width, label=name, hatch="//" if "CPU" in name else None)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("GoKV / Redis (ops/s: higher is better; CPU/op: lower is better)")
    ax.set_title("GoKV vs Redis 7: throughput and server CPU per request ratios")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return True


if __name__ == "__main__":
    sys.exit(main())
