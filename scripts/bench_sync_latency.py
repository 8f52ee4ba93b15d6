#!/usr/bin/env python3
"""The primary's GET latency during a full sync (issue 12's "Performance": the primary's P1
GET p99 during a full sync of 1M keys <= 2x its p99 before).

Run through scripts/bench-sync-latency.sh, which builds the release binary and cleans up after
this script. Python 3 standard library only.

Per round and per server (interleaved: every round runs every server in turn, each on fresh
processes):
  * starts a primary, loads --keys keys (16-byte keys `key:<12 digits>`, 32-byte values) with
    pipelined MSETs;
  * one client sends GET of random loaded keys, one at a time (P1), for --before seconds:
    p50/p99/max "before";
  * tells a replica (started before the primary, idle until now) REPLICAOF it and goes on
    with the same GETs until the replica says
    `master_link_status:up` (a second client polls its INFO every 10 ms): p50/p99/max
    "during", the sync's time, and the CPU seconds the primary and the replica spent in it;
  * stops both.
Servers: `gokv` (every --bin given, `NAME=PATH`, for before/after builds) and, with
`--redis`, redis-server 7 as primary and replica (persistence off, diskless sync without its
5-second delay) on the same machine for reference. Prints one markdown table per round and
one of medians.
"""

import argparse
import os
import random
import secrets
import socket
import statistics
import sys
import threading
import time

sys.dont_write_bytecode = True  # no scripts/__pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_redis import Server, encode, interrupt_on_signals, stop_all  # noqa: E402

VALUE = b"v" * 32


def key(i):
    return b"key:%012d" % i  # 16 bytes


class Conn:
    """A blocking RESP connection: one request, one reply."""

    def __init__(self, port, auth, timeout=30):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb", buffering=1 << 16)
        if auth:
            self.call("AUTH", *auth)

    def send(self, data):
        self.s.sendall(data)

    def reply(self):
        line = self.f.readline()
        if not line:
            raise RuntimeError("connection closed")
        kind = line[:1]
        if kind == b"-":
            raise RuntimeError(line.decode(errors="replace").strip())
        if kind == b"$":
            n = int(line[1:])
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if kind == b"*":
            return [self.reply() for _ in range(int(line[1:]))]
        return line[1:].rstrip(b"\r\n")

    def call(self, *args):
        self.send(encode(args))
        return self.reply()

    def close(self):
        self.s.close()


def load(conn, keys, partition):
    """MSETs of 1000 keys, 20 in flight."""
    batch, depth = 1000, 20
    pending = 0
    head = [b"MSET"] + ([partition] if partition else [])
    for start in range(0, keys, batch):
        parts = list(head)
        for i in range(start, min(keys, start + batch)):
            parts += [key(i), VALUE]
        conn.send(encode(parts))
        pending += 1
        if pending == depth:
            conn.reply()
            pending -= 1
    for _ in range(pending):
        conn.reply()


def gets(conn, keys, partition, until):
    """GETs of random loaded keys, one at a time, until `until()`: latencies in ms."""
    head = b"*3\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(partition), partition) if partition \
        else b"*2\r\n$3\r\nGET\r\n"
    rng = random.Random(1)
    lat = []
    while not until():
        k = key(rng.randrange(keys))
        req = head + b"$16\r\n" + k + b"\r\n"
        t = time.perf_counter_ns()
        conn.send(req)
        v = conn.reply()
        lat.append((time.perf_counter_ns() - t) / 1e6)
        if v != VALUE:
            raise RuntimeError(f"GET {k!r}: {v!r}")
    return lat


def stats(lat):
    if not lat:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    s = sorted(lat)
    q = lambda p: s[min(len(s) - 1, int(p * len(s)))]  # noqa: E731
    return {"n": len(s), "p50": q(0.50), "p99": q(0.99), "max": s[-1]}


def link_up(port, auth):
    c = Conn(port, auth, timeout=5)
    try:
        info = c.call("INFO", "replication") or b""
    finally:
        c.close()
    return b"master_link_status:up" in info


class Launcher:
    def __init__(self, args):
        self.args = args
        self.state = args.state_dir
        self.pidfile = os.path.join(self.state, "pids")
        self.pw = secrets.token_hex(12)
        self.next_port = args.port_base
        self.runs = 0

    def niced(self, argv):
        """--replica-nice N: the replica runs under `nice -n N` (is it its CPU that the
        primary's latency waits for?)."""
        return ["nice", "-n", str(self.args.replica_nice)] + argv if self.args.replica_nice \
            else argv

    def port(self):
        self.next_port += 1
        return self.next_port

    def dir(self, tag):
        self.runs += 1
        d = os.path.join(self.state, f"{self.runs:03d}-{tag}")
        os.makedirs(d)
        return d

    def gokv(self, bin_path, tag, replica=False):
        port = self.port()
        d = self.dir(tag)
        argv = [bin_path, "--port", str(port), "--data-dir", d, "--admin-password", self.pw,
                "--metrics-port", "0", "--shards", str(self.args.shards)]
        if replica:
            argv += ["--primary-user", "admin", "--primary-password", self.pw]
            argv = self.niced(argv)
        return Server(tag, "gokv", argv, port, d + ".log", self.pidfile, ("admin", self.pw))

    def redis(self, tag, replica=False):
        port = self.port()
        d = self.dir(tag)
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--dir", d,
                "--repl-diskless-sync-delay", "0"]
        if replica:
            argv = self.niced(argv)
        return Server(tag, "redis", argv, port, d + ".log", self.pidfile, None)


def one_run(launcher, kind, bin_path, tag):
    a = launcher.args
    # The replica-to-be starts first, as a server of its own, and is told REPLICAOF when the
    # sync is to begin: its own start (GoKV hashes its admin password with argon2 on both
    # cores) is not part of what is measured, and it sits idle beside the "before" GETs.
    if kind == "redis":
        replica = launcher.redis(f"{tag}-replica", replica=True)
        primary = launcher.redis(f"{tag}-primary")
        partition = None
    else:
        replica = launcher.gokv(bin_path, f"{tag}-replica", replica=True)
        primary = launcher.gokv(bin_path, f"{tag}-primary")
        partition = b"bench"
    try:
        c = Conn(primary.port, primary.auth)
        if partition:
            c.call("CREATE", "PARTITION", partition, "STRING", "MEMORY")
        load(c, a.keys, partition)
        # The load's allocations settle, the table stops growing.
        time.sleep(0.5)
        t_end = time.monotonic() + a.before
        before = gets(c, a.keys, partition, lambda: time.monotonic() >= t_end)

        up = threading.Event()
        failed = []
        began = time.monotonic()
        cpu_p0, cpu_r0 = primary.cpu(), replica.cpu()

        def poll():
            # REPLICAOF goes from here, so that the GETs go on from the first moment.
            try:
                rc = Conn(replica.port, replica.auth)
                rc.call("REPLICAOF", "127.0.0.1", primary.port)
                rc.close()
                while not up.is_set():
                    if link_up(replica.port, replica.auth):
                        up.set()
                        return
                    if time.monotonic() - began > a.timeout:
                        failed.append("timeout")
                        up.set()
                        return
                    time.sleep(0.01)
            except Exception as e:  # report, do not hang the GET loop
                failed.append(repr(e))
                up.set()

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        during = gets(c, a.keys, partition, up.is_set)
        sync_s = time.monotonic() - began
        poller.join()
        if failed:
            raise RuntimeError(f"{tag}: the replica never came up ({failed[0]})")
        cpu_p, cpu_r = primary.cpu() - cpu_p0, replica.cpu() - cpu_r0
        c.close()
        return {"before": stats(before), "during": stats(during), "sync_s": sync_s,
                "cpu_p": cpu_p, "cpu_r": cpu_r}
    finally:
        replica.stop()
        primary.stop()


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--gokv-bin", default="target/release/gokv-server")
    ap.add_argument("--loadtest-bin", help=argparse.SUPPRESS)
    ap.add_argument("--bin", action="append", default=[],
                    help="NAME=PATH of a gokv-server build (repeat for A/B; default: gokv=--gokv-bin)")
    ap.add_argument("--redis", action="store_true", help="also Redis 7 primary + replica")
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--before", type=float, default=3.0, help="seconds of GETs before the sync")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds a sync may take")
    ap.add_argument("--replica-nice", type=int, default=0,
                    help="run the replica under nice -n N (diagnosis)")
    ap.add_argument("--port-base", type=int, default=7520)
    a = ap.parse_args()

    interrupt_on_signals()

    targets = []
    for b in a.bin or [f"gokv={a.gokv_bin}"]:
        name, _, path = b.partition("=")
        if not path:
            name, path = os.path.basename(b), b
        targets.append(("gokv", name, path))
    if a.redis:
        targets.append(("redis", "redis", None))
    launcher = Launcher(a)
    results = {t[1]: [] for t in targets}
    print(f"{a.keys} keys (16-byte keys, 32-byte values), GoKV --shards {a.shards}, "
          f"{a.before} s of GETs before, {a.rounds} interleaved rounds; "
          f"{os.cpu_count()} cpus, load {loadavg()} at start", flush=True)
    hdr = ("| round | server | p50 before | p99 before | max before | p50 during | p99 during "
           "| max during | p99 ratio | GETs during | sync s | CPU s primary / replica | load |")
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    try:
        for r in range(a.rounds):
            for kind, name, path in targets:
                res = one_run(launcher, kind, path, f"r{r}-{name}")
                results[name].append(res)
                b, d = res["before"], res["during"]
                print(f"| {r + 1} | {name} | {b['p50']:.3f} | {b['p99']:.3f} | {b['max']:.2f} "
                      f"| {d['p50']:.3f} | {d['p99']:.3f} | {d['max']:.2f} "
                      f"| {d['p99'] / b['p99']:.1f}x | {d['n']} | {res['sync_s']:.2f} "
                      f"| {res['cpu_p']:.2f} / {res['cpu_r']:.2f} | {loadavg()} |", flush=True)
    finally:
        stop_all()
    med = statistics.median
    print()
    print("medians (ms) | server | p99 before | p99 during | p99 ratio | max during | sync s |")
    print("|---|---|---|---|---|---|---|")
    for kind, name, _ in targets:
        rs = results[name]
        print(f"| median of {len(rs)} | {name} | {med(x['before']['p99'] for x in rs):.3f} "
              f"| {med(x['during']['p99'] for x in rs):.3f} "
              f"| {med(x['during']['p99'] / x['before']['p99'] for x in rs):.1f}x "
              f"| {med(x['during']['max'] for x in rs):.2f} | {med(x['sync_s'] for x in rs):.2f} |")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
