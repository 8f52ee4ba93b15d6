#!/usr/bin/env python3
"""Failover by Redis Sentinel, watched live: three nodes (a primary, two replicas), three
unmodified redis-sentinel processes, a writer that counts a write as acknowledged only once
`WAIT 1` says a replica has it. Each trial kills the primary with SIGKILL, waits for Sentinel
to promote a replica and for the first write on it, restarts the old primary (Sentinel makes
it a replica of the new one) and checks that every acknowledged write is on the new primary.

    scripts/failover-demo.sh [--target gokv|redis|both] [--trials N] [--gokv BIN]

One line per second: each node's role (M primary, r replica linked, - down or unlinked), the
writes acknowledged so far and those lost (acknowledged, missing on the primary: 0 or it is a
bug). At the end a table per target: seconds from SIGKILL to the first successful write on
the new primary, per trial, and lost writes. Everything binds 127.0.0.1 and stops on exit.
Needs redis-server (for --target redis), redis-sentinel and redis-py.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

PW = "demo-pw"
# No retries inside redis-py (its default retries a refused connection with back-off for
# seconds): this script notices failures itself, and a dead node must answer "down" at once.
NO_RETRY = dict(retry=Retry(NoBackoff(), 0))
MASTER = "demo"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """A GoKV or Redis server at a fixed port, restartable with its data directory."""

    def __init__(self, kind, gokv_bin, root, name, replicaof=None):
        self.kind, self.bin, self.name = kind, gokv_bin, name
        self.port = free_port()
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.conf = os.path.join(self.dir, "node.conf" if kind == "redis" else "gokv.toml")
        if kind == "redis":
            lines = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}", "save ''",
                     "appendonly no", f"masteruser admin", f"masterauth {PW}",
                     f"user admin on >{PW} ~* &* +@all", "user default off"]
            if replicaof:
                lines.append(f"replicaof 127.0.0.1 {replicaof}")
        else:
            lines = ["# failover demo node"]
            if replicaof:
                lines.append(f'replicaof = "127.0.0.1:{replicaof}"')
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        log = open(os.path.join(self.dir, "log"), "a")
        if self.kind == "redis":
            cmd = ["redis-server", self.conf]
        else:
            cmd = [self.bin, "--port", str(self.port), "--bind", "127.0.0.1",
                   "--data-dir", os.path.join(self.dir, "data"), "--admin-password", PW,
                   "--metrics-port", "0", "--config", self.conf,
                   "--primary-user", "admin", "--primary-password", PW]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        for _ in range(200):
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise SystemExit(f"{self.name} did not start; see {self.dir}/log")

    def kill9(self):
        if self.proc:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def client(self, timeout=2):
        return redis.Redis(host="127.0.0.1", port=self.port, username="admin", password=PW,
                           socket_timeout=timeout, socket_connect_timeout=timeout,
                           decode_responses=True, **NO_RETRY)

    def role(self):
        try:
            info = self.client(0.5).info("replication")
        except redis.RedisError:
            return "-"
        if info.get("role") == "master":
            return "M"
        return "r" if info.get("master_link_status") == "up" else "-"


class Sentinel:
    def __init__(self, root, name, primary_port):
        self.port = free_port()
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        conf = os.path.join(self.dir, "sentinel.conf")
        with open(conf, "w") as f:
            f.write(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
                    f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
                    f"sentinel auth-user {MASTER} admin\nsentinel auth-pass {MASTER} {PW}\n"
                    f"sentinel down-after-milliseconds {MASTER} 1000\n"
                    f"sentinel failover-timeout {MASTER} 10000\n"
                    f"sentinel parallel-syncs {MASTER} 2\n")
        log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(["redis-sentinel", conf], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)

    def master_port(self):
        try:
            c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1,
                            socket_connect_timeout=1, decode_responses=True, **NO_RETRY)
            addr = c.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
            return int(addr[1]) if addr else None
        except (redis.RedisError, ValueError, TypeError, IndexError):
            return None

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Writer(threading.Thread):
    """SET then WAIT 1 to whichever primary the sentinels name, reconnecting on errors."""

    def __init__(self, kind, sentinels):
        super().__init__(daemon=True)
        self.kind, self.sentinels = kind, sentinels
        self.acked = {}
        self.first_on = {}  # port -> time of its first successful write
        self.stop = False
        self.lock = threading.Lock()

    def run(self):
        i = 0
        while not self.stop:
            port = next((p for p in (s.master_port() for s in self.sentinels) if p), None)
            if port is None:
                time.sleep(0.05)
                continue
            c = redis.Redis(host="127.0.0.1", port=port, username="admin", password=PW,
                            socket_timeout=2, socket_connect_timeout=1, **NO_RETRY)
            while not self.stop:
                i += 1
                key, value = f"k{i}", str(i)
                try:
                    if self.kind == "gokv":
                        c.execute_command("SET", "p", key, value)
                    else:
                        c.execute_command("SET", key, value)
                    with self.lock:
                        self.first_on.setdefault(port, time.monotonic())
                    if c.execute_command("WAIT", 1, 1000) >= 1:
                        with self.lock:
                            self.acked[key] = value
                except redis.RedisError:
                    break
            time.sleep(0.02)


def missing(kind, node, acked):
    c = node.client(5)
    keys = list(acked)
    lost = 0
    for at in range(0, len(keys), 500):
        chunk = keys[at:at + 500]
        values = c.execute_command("MGET", "p", *chunk) if kind == "gokv" else c.mget(chunk)
        lost += sum(1 for k, v in zip(chunk, values) if v != acked[k])
    return lost


def trial(kind, args, number):
    root = tempfile.mkdtemp(prefix=f"failover-{kind}-")
    nodes, sentinels = [], []
    try:
        a = Node(kind, args.gokv, root, "a")
        a.start()
        if kind == "gokv":
            a.client().execute_command("CREATE", "PARTITION", "p", "STRING", "MEMORY")
        b = Node(kind, args.gokv, root, "b", replicaof=a.port)
        c = Node(kind, args.gokv, root, "c", replicaof=a.port)
        nodes = [a, b, c]
        b.start()
        c.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(n.role() == "r" for n in (b, c)):
            time.sleep(0.1)
        sentinels = [Sentinel(root, f"s{i}", a.port) for i in range(3)]
        time.sleep(3)  # the sentinels meet through the hello channel
        writer = Writer(kind, sentinels)
        writer.start()
        t0 = time.monotonic()

        def line(note=""):
            with writer.lock:
                acked = len(writer.acked)
            roles = " ".join(f"{n.name}:{n.role()}" for n in nodes)
            print(f"[{kind} trial {number}] {time.monotonic() - t0:5.1f}s  {roles}  "
                  f"acked {acked}  {note}", flush=True)

        for _ in range(3):
            time.sleep(1)
            line()
        killed = time.monotonic()
        a.kill9()
        line("primary a killed (SIGKILL)")
        first = None
        while time.monotonic() - killed < 60 and first is None:
            time.sleep(1)
            with writer.lock:
                first, new_port = next(((t, p) for p, t in writer.first_on.items()
                                        if p != a.port and t > killed), (None, None))
            line()
        if first is None:
            print(f"[{kind} trial {number}] no new primary within 60 s", flush=True)
            return None, None
        a.start()
        line("a restarted")
        new = next(n for n in nodes if n.port == new_port)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and a.role() != "r":
            time.sleep(1)
            line()
        writer.stop = True
        writer.join(5)
        lost = missing(kind, new, dict(writer.acked))
        line(f"new primary {new.name}: lost {lost} of {len(writer.acked)} acknowledged")
        return first - killed, lost
    finally:
        for s in sentinels:
            s.stop()
        for n in nodes:
            n.kill9()
        shutil.rmtree(root, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="gokv", choices=["gokv", "redis", "both"])
    p.add_argument("--trials", type=int, default=1)
    p.add_argument("--gokv", default="target/release/gokv-server")
    args = p.parse_args()
    for tool in ["redis-sentinel"] + (["redis-server"] if args.target != "gokv" else []):
        if not shutil.which(tool):
            sys.exit(f"needs {tool} (Debian: apt-get install redis-sentinel redis-server)")
    kinds = ["gokv", "redis"] if args.target == "both" else [args.target]
    results = {k: [] for k in kinds}
    for n in range(1, args.trials + 1):
        for kind in kinds:  # interleaved: a change in machine load hits both alike
            results[kind].append(trial(kind, args, n))
    print("\n| target | trial | SIGKILL -> first write on the new primary | lost acknowledged writes |")
    print("|---|---|---|---|")
    for kind in kinds:
        for i, (secs, lost) in enumerate(results[kind], 1):
            shown = f"{secs:.2f} s" if secs is not None else "no failover"
            print(f"| {kind} | {i} | {shown} | {lost if lost is not None else '-'} |")


if __name__ == "__main__":
    main()
