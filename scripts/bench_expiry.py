#!/usr/bin/env python3
"""Key deadlines and active expiry: GoKV vs Redis 7, side by side (issue 10, "Performance").

Run through scripts/bench-expiry.sh, which installs redis, builds the release binaries and
cleans up after this script. Python 3 standard library only; the servers, the RESP loader,
redis-benchmark and gokv-loadtest driving and the CPU accounting are bench_vs_redis.py's.

Scenarios (GoKV --shards 1 and --shards 2 vs redis-server --save '' --appendonly no):
  1. SET with a deadline at -P 16: `SET setex key:__rand_int__ <32 x> EX 3600` (Redis: the
     same without the partition word), redis-benchmark -c 50 -r KEYS; throughput and server
     CPU per op, GoKV/Redis. A plain `SET` in its own partition/database runs beside it.
  2. GET -P 16 on a partition (Redis: database 1) whose KEYS keys all have a deadline
     (EX 3600) vs one (database 0) whose keys have none, same server (and shard), same round,
     run A B B A: with/without.
  3. Memory: on fresh servers (GoKV --shards 1), N 16-byte keys with 32-byte values, with
     `PX 3600000` and without; RSS growth per key, the deadline's cost per key, GoKV/Redis.
  4. Expiry storm: on fresh servers, KEYS live keys and N keys sharing one deadline (PXAT),
     a steady GET load of the live keys (gokv-loadtest -P 1 at a fixed rate, latency from
     each request's due time): p99 in a window before the deadline vs a window from it;
     VmRSS every 100 ms from the deadline: seconds until it is within 10% of the RSS before
     the storm keys were loaded, or, when it never gets there, until it stopped falling;
     DBSIZE every 100 ms: seconds until the expired keys are reclaimed.

Every round runs every scenario against every server in turn (interleaved). A scenario that
fails on one server (GoKV before it has the commands) is reported as an error for that server
and the others go on. Prints one table (figure, target, GoKV s1, GoKV s2, Redis), the machine
and the exact commands; `--json FILE` writes the same as JSON.
"""

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no scripts/__pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_redis import (CLK_TCK, CONNS, VALUE32, Launcher, Ports, RunFailed,  # noqa: E402
                            Server, auth_args, encode, interrupt_on_signals, load_keys,
                            loadavg, machine_info, redis_benchmark, run_loadtest, shell_line,
                            stop_all)

V32 = VALUE32.encode()
SERVERS = ("gokv s1", "gokv s2", "redis")  # the table's columns


# ---------------------------------------------------------------------------------------------
# a RESP connection that stays open (polling, checks)


class ReplyError(str):
    """An error reply (`-ERR ...`), returned rather than raised."""


class Conn:
    def __init__(self, server, timeout=10):
        self.server = server
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb")
        if server.auth:
            self.ok(*auth_args(server.auth))

    def call(self, *args):
        self.sock.sendall(encode(args))
        return self._read()

    def ok(self, *args):
        """call(), and an error reply fails the run, naming the command."""
        reply = self.call(*args)
        if isinstance(reply, ReplyError):
            shown = ["<pw>" if self.server.auth and a == self.server.auth[1] else str(a)
                     for a in args]
            raise RunFailed(f"{' '.join(shown)} on {self.server.name}: -{reply}")
        return reply

    def _read(self):
        line = self.f.readline()
        if not line.endswith(b"\r\n"):
            raise RunFailed(f"{self.server.name}: connection closed or bad reply {line!r}")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return ReplyError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RunFailed(f"{self.server.name}: unexpected reply {line!r}")

    def close(self):
        self.f.close()
        self.sock.close()


def key_count(conn, part):
    """Keys in GoKV partition `part`, or in the Redis connection's database (part None):
    DBSIZE as Redis counts them; GoKV before it has DBSIZE: DESCRIBE PARTITION's `keys`."""
    if part is None:
        return conn.ok("DBSIZE"), "DBSIZE"
    reply = conn.call("DBSIZE", part)
    if not isinstance(reply, ReplyError):
        return reply, "DBSIZE"
    fields = conn.ok("DESCRIBE", "PARTITION", part)
    d = {fields[i].decode(): fields[i + 1] for i in range(0, len(fields) - 1, 2)}
    return int(d["keys"]), "DESCRIBE PARTITION keys"


def check_keys(server, part, db, want, ttl_key=None, plain_key=None):
    """The partition/database holds `want` keys; PTTL of `ttl_key` is a live deadline and of
    `plain_key` -1 (so a deadline that was silently dropped, or added, fails the run)."""
    conn = Conn(server)
    try:
        p = [part] if part else []
        if db and server.kind == "redis":
            conn.ok("SELECT", db)
        n, how = key_count(conn, part)
        if n != want:
            raise RunFailed(f"{server.name}: {how} of {part or f'db {db}'} is {n}, "
                            f"expected {want}")
        if ttl_key is not None:
            pttl = conn.ok("PTTL", *p, ttl_key)
            if not isinstance(pttl, int) or pttl <= 0:
                raise RunFailed(f"{server.name}: PTTL {ttl_key} is {pttl!r}: no deadline")
        if plain_key is not None:
            pttl = conn.call("PTTL", *p, plain_key)
            # A server without PTTL has no deadlines to check for.
            unknown = isinstance(pttl, ReplyError) and "unknown command" in pttl
            if pttl != -1 and not unknown:
                raise RunFailed(f"{server.name}: PTTL {plain_key} is {pttl!r}, expected -1")
    finally:
        conn.close()


def first_line(e):
    lines = [x for x in str(e).strip().splitlines() if x.strip()]
    head = lines[0] if lines else repr(e)
    # redis-benchmark's own words are the most telling: show the server's error reply.
    for x in lines:
        if "Error from server" in x or x.startswith(("ERR", "-ERR")):
            return f"{head.rstrip(':')} ... {x.strip()}"
    return head


# ---------------------------------------------------------------------------------------------
# the scenarios


class Bench:
    def __init__(self, args, state, pidfile):
        self.args = args
        self.launcher = Launcher(args.gokv_bin, state, pidfile,
                                 Ports(args.port_base, args.port_limit))
        self.auth = self.launcher.auth
        self.commands = self.launcher.commands  # (scenario, server) -> exact command
        self.runs = {}  # (scenario, server name) -> [result per round]
        self.errors = {}  # (scenario, server name) -> first error
        self.notes = []  # printed under the table
        q = args.quick
        self.keys = args.keys or (20_000 if q else 100_000)
        self.n_p16 = args.requests or (100_000 if q else 1_000_000)
        self.mem_keys = args.mem_keys or (100_000 if q else 1_000_000)
        self.storm_keys = args.storm_keys or (100_000 if q else 1_000_000)
        self.storm_rate = args.storm_rate or (10_000 if q else 20_000)
        self.storm_conns = 20
        self.before_s = 1.5 if q else 5.0
        self.storm_s = args.storm_window or (2.0 if q else 5.0)
        self.rss_timeout = args.rss_timeout or (4.0 if q else 30.0)

    # -- bookkeeping -------------------------------------------------------------------------

    def attempt(self, scenario, server, fn):
        """Runs fn() for (scenario, server) unless it failed before; a failure is recorded
        (once) and printed, and the run goes on."""
        key = (scenario, server.name)
        if key in self.errors:
            return None
        try:
            r = fn()
        except RunFailed as e:
            self.errors[key] = str(e)
            print(f"  {scenario:10} {server.name:8} ERROR: {first_line(e)}", flush=True)
            return None
        self.runs.setdefault(key, []).append(r)
        return r

    def note(self, scenario, server, cmd):
        self.commands.setdefault((scenario, server.name), cmd)

    def rb(self, scenario, server, command, db, keyspace):
        """redis-benchmark -P 16 of `command` (GoKV form; Redis gets it without the partition,
        in database `db`)."""
        if server.kind == "gokv":
            cmd, extra = command, []
        else:
            cmd, extra = [command[0]] + command[2:], ["--dbnum", str(db)]
        r = redis_benchmark(server, self.n_p16, 16, cmd, server.auth, keyspace, extra)
        self.note(scenario, server, shell_line(self.launcher.redact(r["argv"])))
        return r

    def fill(self, server, part, db, prefix, n, suffix=()):
        """Pipelined writer: n keys `<prefix><12 digits>` (16 bytes with a 4-byte prefix),
        32-byte values, `suffix` (e.g. [b"EX", b"3600"]) after each. Returns keys/s."""
        p = [part.encode()] if server.kind == "gokv" else []
        sel = [[b"SELECT", str(db).encode()]] if server.kind == "redis" and db else []
        t0 = time.time()
        try:
            load_keys(server.port, server.auth, set_commands(sel, p, prefix, n, suffix))
        except RunFailed as e:
            form = b" ".join([b"SET"] + p + [prefix + b"<12 digits>", b"<32 x>"] + list(suffix))
            raise RunFailed(f"loading {form.decode()}: {e}") from None
        return n / max(time.time() - t0, 1e-6)

    # -- 1 and 2: one set of servers, interleaved rounds ---------------------------------------

    def throughput(self, servers):
        k = self.keys
        ready2 = {}
        for s in servers:
            if s.kind == "gokv":
                # A new partition goes to the shard with the fewest (ties to the lowest id):
                # on --shards 2 this order puts plain and ttl on shard 0, setex and setplain
                # on shard 1, so that each with/without pair is measured on one shard (the
                # shards of a 2-core machine are not alike: the other work lands unevenly).
                for name in ("plain", "setex", "ttl", "setplain"):
                    self.launcher.create_partition(s, name)
                for a, b in (("plain", "ttl"), ("setex", "setplain")):
                    sa = self.launcher.partition_shard(s, a)
                    sb = self.launcher.partition_shard(s, b)
                    if sa != sb:
                        self.notes.append(f"{s.name}: partitions {a} and {b} are on shards "
                                          f"{sa} and {sb}, not one shard as intended")

            def setup2(s=s):
                self.fill(s, "plain", 0, b"key:", k)
                self.fill(s, "ttl", 1, b"key:", k, [b"EX", b"3600"])
                g = s.kind == "gokv"
                check_keys(s, "plain" if g else None, 0, k, plain_key="key:000000000000")
                check_keys(s, "ttl" if g else None, 1, k, ttl_key="key:000000000000")
                return True
            ready2[s.name] = self.attempt("2 setup", s, setup2)
            if not ready2[s.name]:
                self.errors[("2", s.name)] = self.errors[("2 setup", s.name)]
            self.note("2 fill", s, f"python pipelined writer: {k:,} x SET "
                      + ("plain " if s.kind == "gokv" else "")
                      + "key:<12 digits> <32 x> (db 0); the same + EX 3600 in "
                      + ("ttl" if s.kind == "gokv" else "db 1"))

        setex = ["SET", "setex", "key:__rand_int__", VALUE32, "EX", "3600"]
        setplain = ["SET", "setplain", "key:__rand_int__", VALUE32]
        for rnd in range(1, self.args.rounds + 1):
            print(f"round {rnd}/{self.args.rounds}: scenarios 1, 2 (load average {loadavg()})",
                  flush=True)
            for s in servers:
                r = self.attempt("1", s, lambda s=s: self.rb("1", s, setex, 2, k))
                if r:
                    show("1 SET EX 3600 -P16", s, r)
            for s in servers:
                r = self.attempt("1 ref", s, lambda s=s: self.rb("1 ref", s, setplain, 3, k))
                if r:
                    show("1 SET (no EX) -P16", s, r)
            # Scenario 2 runs a server's GETs back to back as A B B A (B A A B in even rounds),
            # so that each round yields one with/without pair under the same machine load and
            # a load that drifts during the four runs hits both sides alike.
            for s in servers:
                if not ready2.get(s.name):
                    continue
                order = ("plain", "ttl", "ttl", "plain") if rnd % 2 else \
                    ("ttl", "plain", "plain", "ttl")

                def pair(s=s, order=order):
                    got = {"plain": [], "ttl": []}
                    for which in order:
                        cmd = ["GET", which, "key:__rand_int__"]
                        r = self.rb(f"2 {which}", s, cmd, 0 if which == "plain" else 1, k)
                        show(f"2 GET -P16, {which}", s, r)
                        got[which].append(r)
                    return {w: {x: statistics.mean(r[x] for r in rs)
                                for x in ("ops", "p99_ms", "cpu_us")}
                            for w, rs in got.items()}
                self.attempt("2", s, pair)

    # -- 3: memory ---------------------------------------------------------------------------

    def memory(self):
        n = self.mem_keys
        for rnd in range(1, self.args.mem_rounds + 1):
            print(f"round {rnd}/{self.args.mem_rounds}: scenario 3, memory, {n:,} keys "
                  f"(load average {loadavg()})", flush=True)
            for ttl in (False, True):
                for kind in ("gokv", "redis"):
                    tag = f"mem-{'ttl' if ttl else 'plain'}"
                    s = self.launcher.gokv(1, tag) if kind == "gokv" else \
                        self.launcher.redis(tag)
                    try:
                        r = self.attempt(f"3 {'ttl' if ttl else 'plain'}", s,
                                         lambda s=s, ttl=ttl: self.memory_one(s, n, ttl))
                    finally:
                        s.stop()
                    if r:
                        print(f"  3 memory {'with' if ttl else 'no':4} deadlines {s.name:8} "
                              f"RSS {r['rss0'] / 2**20:7.1f} -> {r['rss1'] / 2**20:7.1f} MiB, "
                              f"{r['bytes_per_key']:6.1f} B/key", flush=True)

    def memory_one(self, s, n, ttl):
        if s.kind == "gokv":
            self.launcher.create_partition(s, "mem")
        time.sleep(0.2)
        rss0 = s.rss()
        suffix = [b"PX", b"3600000"] if ttl else []
        cpu0 = s.cpu()
        rate = self.fill(s, "mem", 0, b"key:", n, suffix)
        cpu1 = s.cpu()
        time.sleep(0.5)
        rss1 = s.rss()
        check_keys(s, "mem" if s.kind == "gokv" else None, 0, n,
                   ttl_key="key:000000000000" if ttl else None,
                   plain_key=None if ttl else "key:000000000000")
        self.note(f"3 {'ttl' if ttl else 'plain'}", s,
                  f"python pipelined writer (batches of 2000), fresh server: {n:,} x SET "
                  + ("mem " if s.kind == "gokv" else "") + "key:<12 digits> <32 x>"
                  + (" PX 3600000" if ttl else ""))
        return {"rss0": rss0, "rss1": rss1, "bytes_per_key": (rss1 - rss0) / n,
                "load_ops": rate, "cpu_us": (cpu1 - cpu0) * 1e6 / n}

    # -- 4: expiry storm ---------------------------------------------------------------------

    def storm(self):
        for rnd in range(1, self.args.storm_rounds + 1):
            print(f"round {rnd}/{self.args.storm_rounds}: scenario 4, expiry storm, "
                  f"{self.storm_keys:,} keys (load average {loadavg()})", flush=True)
            for kind, shards in (("gokv", 1), ("redis", 0), ("gokv", 2)):
                s = self.launcher.gokv(shards, "storm") if kind == "gokv" else \
                    self.launcher.redis("storm")
                try:
                    r = self.attempt("4", s, lambda s=s: self.storm_one(s))
                finally:
                    s.stop()
                if r:
                    print(f"  4 storm {s.name:8} p99 before {r['before']['p99_ms']:.3f} ms, "
                          f"during {r['storm']['p99_ms']:.3f} ms ({r['p99_ratio']:.2f}x); "
                          f"p99.9 {r['before']['p999_ms']:.3f} -> {r['storm']['p999_ms']:.3f}"
                          f" ms; keys reclaimed {fmt_s(r['reclaim_s'])}; RSS "
                          f"{r['rss_base'] / 2**20:.1f} -> {r['rss_peak'] / 2**20:.1f} -> "
                          f"{r['rss_end'] / 2**20:.1f} MiB, {rss_text(r)}", flush=True)

    def storm_one(self, s):
        gokv = s.kind == "gokv"
        part = "bench" if gokv else None
        if gokv:
            self.launcher.create_partition(s, "bench")
        live, n = self.keys, self.storm_keys
        rate = self.fill(s, "bench", 0, b"key:", live)
        time.sleep(0.3)
        rss_base = s.rss()
        # One deadline for every storm key, far enough out for the load (at the rate the live
        # keys went in, with room to spare) and the "before" window.
        lead = n / rate * 1.5 + self.before_s + 1.5
        deadline_ms = int((time.time() + lead) * 1000)
        deadline = deadline_ms / 1000
        self.fill(s, "bench", 0, b"exp:", n, [b"PXAT", b"%d" % deadline_ms])
        check_keys(s, part, 0, live + n, ttl_key="exp:000000000000",
                   plain_key="key:000000000000")
        self.note("4 load", s, f"python pipelined writer: {live:,} x SET "
                  + ("bench " if gokv else "") + "key:<12 digits> <32 x>, then "
                  f"{n:,} x SET {'bench ' if gokv else ''}exp:<12 digits> <32 x> PXAT <D>, "
                  f"D = now + {lead:.1f} s")
        room = deadline - time.time() - 1.1
        if room < self.before_s / 2:
            raise RunFailed(f"{s.name}: the storm keys took too long to load: {room:.1f} s "
                            f"left before their deadline, {self.before_s} s needed")
        before_s = min(self.before_s, room)
        time.sleep(max(0, deadline - 1.0 - before_s - time.time()))
        rss_peak = s.rss()

        def load(seconds):
            argv = [self.args.loadtest_bin, "--target", s.kind, "--port", str(s.port),
                    "-c", str(self.storm_conns), "-P", "1", "--ratio", "1:0",
                    "--keys", str(live), "--rate", str(self.storm_rate),
                    "--duration", f"{int(seconds * 1000)}ms", "--json", "-q"]
            if gokv:
                argv += ["--partitions", "bench"]
                if s.auth:
                    argv += ["--user", s.auth[0], "--password", s.auth[1]]
            t0 = time.time()
            summary, cpu = run_loadtest(s, argv)
            wall = time.time() - t0
            lat = summary["latency_us"]
            self.note("4 GET load", s, shell_line(self.launcher.redact(argv)))
            return {"p50_ms": lat["p50"] / 1000, "p99_ms": lat["p99"] / 1000,
                    "p999_ms": lat["p999"] / 1000, "max_ms": lat["max"] / 1000,
                    "ops_per_sec": summary["ops_per_sec"], "cpu_cores": cpu / wall,
                    "start": t0 - deadline, "seconds": seconds}

        before = load(before_s)
        poll = Poller(s, part, live, deadline, rss_base, self.rss_timeout, self.storm_s)
        time.sleep(max(0, deadline - 0.3 - time.time()))
        poll.start()
        time.sleep(max(0, deadline - 0.2 - time.time()))
        during = load(self.storm_s + 0.2)
        poll.join()
        if poll.error:
            raise poll.error
        r = {"before": before, "storm": during, "rss_base": rss_base, "rss_peak": rss_peak,
             "p99_ratio": during["p99_ms"] / before["p99_ms"],
             "p999_ratio": during["p999_ms"] / before["p999_ms"], "live_keys": live,
             "storm_keys": n, "deadline_lead_s": lead}
        r.update(poll.result())
        return r


def set_commands(sel, p, prefix, n, suffix):
    """The fill's commands, one at a time (a million lists at once would cost ~200 MB)."""
    yield from sel
    suffix = list(suffix)
    for i in range(n):
        yield [b"SET"] + p + [b"%s%012d" % (prefix, i), V32] + suffix


class Poller(threading.Thread):
    """From just before `deadline` on, every 100 ms: the server's VmRSS and its key count.
    Stops when RSS is within 10% of `rss_base` (and the keys are reclaimed), after `timeout`
    seconds, or, once the keys are reclaimed and the load window is over, when RSS has not
    fallen for 3 s."""

    def __init__(self, server, part, live, deadline, rss_base, timeout, window):
        super().__init__(daemon=True)
        self.server, self.part, self.live, self.deadline = server, part, live, deadline
        self.rss_base, self.timeout, self.window = rss_base, timeout, window
        self.samples = []  # (seconds after the deadline, rss bytes, keys or None)
        self.count_how = None
        self.error = None

    def run(self):
        try:
            self._run()
        except (RunFailed, OSError) as e:
            self.error = RunFailed(f"{self.server.name}: polling during the storm: {e}")

    def _run(self):
        conn = Conn(self.server)
        try:
            counting = True
            last_drop = 0.0
            low = self.server.rss()
            while True:
                t = time.time() - self.deadline
                rss = self.server.rss()
                keys = None
                if counting:
                    try:
                        keys, self.count_how = key_count(conn, self.part)
                    except RunFailed:
                        counting = False
                self.samples.append((t, rss, keys))
                if t >= 0:
                    if rss < low - max(2**20, 0.01 * (low - self.rss_base)):
                        low, last_drop = rss, t
                    reclaimed = not counting or (keys is not None and keys <= self.live)
                    if (rss <= 1.1 * self.rss_base and reclaimed and t >= self.window) \
                            or t >= self.timeout \
                            or (reclaimed and t >= self.window and t - last_drop >= 3.0):
                        break
                time.sleep(max(0, 0.1 - (time.time() - self.deadline - t)))
        finally:
            conn.close()

    def result(self):
        after = [x for x in self.samples if x[0] >= 0]
        reclaim = next((t for t, _, k in after if k is not None and k <= self.live), None)
        back = next((t for t, rss, _ in after if rss <= 1.1 * self.rss_base), None)
        peak = max(rss for _, rss, _ in self.samples)
        end = after[-1][1] if after else self.samples[-1][1]
        # When it never got back: the time of the last fall of 1% of the growth (or 1 MiB)
        # below the lowest RSS seen before (None: it never fell).
        before = [rss for t, rss, _ in self.samples if t < 0]
        low, stopped = (before[-1] if before else peak), None
        for t, rss, _ in after:
            if rss < low - max(2**20, 0.01 * (peak - self.rss_base)):
                low, stopped = rss, t
        grown = peak - self.rss_base
        back90 = next((t for t, rss, _ in after if rss - self.rss_base <= 0.1 * grown), None)
        return {"reclaim_s": reclaim, "count_how": self.count_how, "rss_back_s": back,
                "rss_back90_s": back90,
                "rss_stopped_s": stopped if back is None else None, "rss_end": end,
                "rss_peak_polled": peak,
                "held_share": (end - self.rss_base) / grown if grown > 0 else 0.0,
                "polled_s": after[-1][0] if after else 0.0,
                "rss_samples": [(round(t, 2), rss) for t, rss, _ in self.samples]}


def fmt_s(x):
    return "n/a" if x is None else f"{x:.1f} s"


def rss_text(r):
    if r["rss_back_s"] is not None:
        return f"back within 10% of the pre-load RSS after {r['rss_back_s']:.1f} s"
    if r["rss_stopped_s"] is None:
        return f"RSS did not fall within {r['polled_s']:.1f} s"
    return (f"never back within 10% (polled {r['polled_s']:.1f} s): stopped falling after "
            f"{r['rss_stopped_s']:.1f} s, {100 * r['held_share']:.0f}% of the growth held")


def show(label, s, r):
    print(f"  {label:28} {s.name:8} {r['ops']:>11,.0f} ops/s  p99 {r['p99_ms']:7.3f} ms  "
          f"{r['cpu_us']:6.3f} us/op", flush=True)


# ---------------------------------------------------------------------------------------------
# the table


def med(xs):
    return statistics.median(xs) if xs else None


class Figure:
    """One row: a value per server (or an error), a target for GoKV's values."""

    def __init__(self, fid, name, target=None, op=None, limit=None, unit=""):
        self.fid, self.name, self.target, self.op, self.limit = fid, name, target, op, limit
        self.unit = unit
        self.cells = {}  # server -> dict(value, lo, hi, text, error, note)

    def set(self, server, value, lo=None, hi=None, fmt="{:.2f}", note=""):
        text = fmt.format(value)
        if lo is not None and hi is not None and (lo != value or hi != value):
            text += f" ({fmt.format(lo)}–{fmt.format(hi)})"
        if note:
            text += f" {note}"
        met = None
        if self.op and server != "redis" and value is not None:
            met = value >= self.limit if self.op == ">=" else value <= self.limit
        self.cells[server] = {"value": value, "min": lo, "max": hi, "text": text, "met": met,
                              "error": None}

    def fail(self, server, error):
        self.cells[server] = {"value": None, "text": "error", "met": None,
                              "error": first_line(error)}

    def text(self, server):
        c = self.cells.get(server)
        if not c:
            return "—"
        mark = {True: " ✓", False: " ✗", None: ""}[c["met"]]
        return c["text"] + mark


def build_figures(b):
    runs, errors = b.runs, b.errors
    figs = []

    def runs_of(scen, server):
        return runs.get((scen, server), [])

    def err(scen, server):
        return errors.get((scen, server))

    def absolute(fig, scen, key, fmt, servers=SERVERS, pick=lambda r: r):
        for s in servers:
            e = err(scen, s)
            rs = [pick(r) for r in runs_of(scen, s)]
            if e:
                fig.fail(s, e)
            elif rs:
                xs = [r[key] for r in rs if r[key] is not None]
                if xs:
                    fig.set(s, med(xs), min(xs), max(xs), fmt)
        return fig

    def vs_redis(fig, scen, key, pick=lambda r: r):
        """GoKV median / Redis median; the spread: the per-round ratios."""
        red = [pick(r)[key] for r in runs_of(scen, "redis")]
        for s in ("gokv s1", "gokv s2"):
            e = err(scen, s) or err(scen, "redis")
            gs = [pick(r)[key] for r in runs_of(scen, s)]
            if e:
                fig.fail(s, e)
            elif gs and red and med(red) > 0:
                per = [g / r for g, r in zip(gs, red) if r > 0]
                fig.set(s, med(gs) / med(red), min(per), max(per), "{:.2f}x")
        if red and not err(scen, "redis"):
            fig.cells["redis"] = {"value": 1.0, "text": "1 (reference)", "met": None,
                                  "error": None}
        elif err(scen, "redis"):
            fig.fail("redis", err(scen, "redis"))
        return fig

    def paired(fig, scen, num, den, key, servers=SERVERS):
        """Within one server: median over rounds of num/den, the spread of those ratios."""
        for s in servers:
            e = err(scen, s)
            if e:
                fig.fail(s, e)
                continue
            ratios = [num(r)[key] / den(r)[key] for r in runs_of(scen, s) if den(r)[key] > 0]
            if ratios:
                fig.set(s, med(ratios), min(ratios), max(ratios), "{:.2f}x")
        return fig

    # 1
    figs.append(absolute(Figure("1a", "SET k v EX 3600, -P 16: ops/s"), "1", "ops",
                         "{:,.0f}"))
    figs.append(vs_redis(Figure("1b", "SET EX -P 16 throughput, GoKV/Redis", ">= 1.40x",
                                ">=", 1.40), "1", "ops"))
    figs.append(absolute(Figure("1c", "SET EX -P 16: server CPU µs/op"), "1", "cpu_us",
                         "{:.3f}"))
    figs.append(vs_redis(Figure("1d", "SET EX -P 16 server CPU/op, GoKV/Redis", "<= 0.55x",
                                "<=", 0.55), "1", "cpu_us"))
    f = Figure("1e", "SET EX / plain SET, same server: ops/s (CPU/op)")
    for s in SERVERS:
        e = err("1", s) or err("1 ref", s)
        a, r = runs_of("1", s), runs_of("1 ref", s)
        if e:
            f.fail(s, e)
        elif a and r:
            ops = med([x["ops"] for x in a]) / med([x["ops"] for x in r])
            rc = med([x["cpu_us"] for x in r])
            cpu = med([x["cpu_us"] for x in a]) / rc if rc > 0 else float("nan")
            f.set(s, ops, fmt="{:.2f}x", note=f"({cpu:.2f}x)")
    figs.append(f)
    # 2
    figs.append(absolute(Figure("2a", "GET -P 16, every key with a deadline: ops/s"), "2",
                         "ops", "{:,.0f}", pick=lambda r: r["ttl"]))
    figs.append(paired(Figure("2b", "GET -P 16 ops/s, all keys with deadlines / none",
                              ">= 0.97x", ">=", 0.97), "2",
                       lambda r: r["ttl"], lambda r: r["plain"], "ops"))
    figs.append(paired(Figure("2c", "GET -P 16 server CPU/op, with deadlines / none"), "2",
                       lambda r: r["ttl"], lambda r: r["plain"], "cpu_us"))
    # 3
    mem = ("gokv s1", "redis")
    figs.append(absolute(Figure("3a", f"RSS B/key, {b.mem_keys:,} keys, no deadline"),
                         "3 plain", "bytes_per_key", "{:.1f}", mem))
    figs.append(absolute(Figure("3b", f"RSS B/key, {b.mem_keys:,} keys, all with PX deadline"),
                         "3 ttl", "bytes_per_key", "{:.1f}", mem))
    f = Figure("3c", "deadline's cost: B/key with − without", "<= 8 B", "<=", 8.0)
    for s in mem:
        e = err("3 ttl", s) or err("3 plain", s)
        a, r = runs_of("3 ttl", s), runs_of("3 plain", s)
        if e:
            f.fail(s, e)
        elif a and r:
            f.set(s, med([x["bytes_per_key"] for x in a]) - med([x["bytes_per_key"] for x in r]),
                  fmt="{:.1f}")
    figs.append(f)
    f = Figure("3d", "RSS B/key with deadlines, GoKV/Redis", "<= 0.45x", "<=", 0.45)
    e = err("3 ttl", "gokv s1") or err("3 ttl", "redis")
    a, r = runs_of("3 ttl", "gokv s1"), runs_of("3 ttl", "redis")
    if e:
        f.fail("gokv s1", e)
    elif a and r:
        f.set("gokv s1", med([x["bytes_per_key"] for x in a])
              / med([x["bytes_per_key"] for x in r]), fmt="{:.2f}x")
    if r:
        f.cells["redis"] = {"value": 1.0, "text": "1 (reference)", "met": None, "error": None}
    figs.append(f)
    # 4
    figs.append(absolute(Figure("4a", f"storm: GET -P 1 at {b.storm_rate:,}/s, p99 ms before"),
                         "4", "p99_ms", "{:.3f}", pick=lambda r: r["before"]))
    figs.append(absolute(Figure("4b", "storm: p99 ms during the storm window"), "4", "p99_ms",
                         "{:.3f}", pick=lambda r: r["storm"]))
    figs.append(absolute(Figure("4c", "storm: p99 during / before", "<= 2.00x", "<=", 2.0),
                         "4", "p99_ratio", "{:.2f}x"))
    figs.append(absolute(Figure("4d", "storm: p99.9 during / before"), "4", "p999_ratio",
                         "{:.2f}x"))
    figs.append(absolute(Figure("4e", "storm: max latency ms during the storm window"), "4",
                         "max_ms", "{:.1f}", pick=lambda r: r["storm"]))
    f = absolute(Figure("4f", "storm: seconds until the expired keys are reclaimed"), "4",
                 "reclaim_s", "{:.1f}")
    for s in SERVERS:
        rs = runs_of("4", s)
        if rs and not err("4", s) and any(r["reclaim_s"] is None for r in rs):
            n = sum(r["reclaim_s"] is None for r in rs)
            how = "no key count" if all(r["count_how"] is None for r in rs) else \
                f"not within {max(r['polled_s'] for r in rs):.1f} s"
            f.cells[s] = {"value": None, "text": f"{how} ({n}/{len(rs)} rounds)", "met": None,
                          "error": None}
    figs.append(f)
    f = Figure("4g", "storm: seconds until RSS is within 10% of its pre-load value",
               "<= 5 s", "<=", 5.0)
    for s in SERVERS:
        e = err("4", s)
        rs = runs_of("4", s)
        if e:
            f.fail(s, e)
        elif rs:
            backs = [r["rss_back_s"] for r in rs]
            if all(x is not None for x in backs):
                f.set(s, med(backs), min(backs), max(backs), "{:.1f}")
            else:
                worst = next(r for r in rs if r["rss_back_s"] is None)
                f.cells[s] = {"value": None, "text": f"never ({sum(x is None for x in backs)}"
                              f"/{len(rs)} rounds; {rss_text(worst)})",
                              "met": False if s != "redis" else None, "error": None}
    figs.append(f)
    f = Figure("4h", "storm: seconds until RSS has given back 90% of the storm keys' growth")
    for s in SERVERS:
        e = err("4", s)
        rs = runs_of("4", s)
        if e:
            f.fail(s, e)
        elif rs:
            xs = [r["rss_back90_s"] for r in rs]
            if all(x is not None for x in xs):
                f.set(s, med(xs), min(xs), max(xs), "{:.1f}")
            else:
                f.cells[s] = {"value": None, "text": f"not within "
                              f"{max(r['polled_s'] for r in rs):.1f} s "
                              f"({sum(x is None for x in xs)}/{len(rs)} rounds)", "met": None,
                              "error": None}
    figs.append(f)
    f = Figure("4i", "storm: server CPU, cores busy, before → during")
    for s in SERVERS:
        e = err("4", s)
        rs = runs_of("4", s)
        if e:
            f.fail(s, e)
        elif rs:
            bc = med([r["before"]["cpu_cores"] for r in rs])
            dc = med([r["storm"]["cpu_cores"] for r in rs])
            f.set(s, bc, fmt="{:.2f}", note=f"→ {dc:.2f}")
    figs.append(f)
    return figs


def render(b, machine, figs):
    a = b.args
    lines = []
    w = lines.append
    w(f"# GoKV vs Redis: key deadlines and active expiry, "
      f"{datetime.datetime.now().isoformat(timespec='seconds')}")
    w("")
    w(f"- machine: {machine['nproc']} cores, {machine['cpu']}, Linux {machine['kernel']}; "
      f"load average before {machine['load_before']}, after {machine['load_after']}")
    w(f"- GoKV {machine['gokv']} ({a.gokv_bin}), {machine['redis']}; auth "
      f"{'on' if b.auth else 'off (server has no --admin-password)'}")
    w(f"- {a.rounds} interleaved round(s) of 1 and 2 (GoKV --shards 1, --shards 2, Redis in "
      f"turn), {a.mem_rounds} of 3, {a.storm_rounds} of 4{' (--quick)' if a.quick else ''}; "
      f"redis-benchmark -c {CONNS} -P 16 -n {b.n_p16:,} -r {b.keys:,}; 32-byte values")
    w(f"- 3: fresh servers (GoKV --shards 1), {b.mem_keys:,} keys; 4: fresh servers, "
      f"{b.keys:,} live keys + {b.storm_keys:,} keys with one PXAT deadline; GET load "
      f"gokv-loadtest -c {b.storm_conns} -P 1 --rate {b.storm_rate:,} on the live keys, "
      f"latency from each request's due time; windows: {b.before_s:.1f} s ending 1 s before "
      f"the deadline, {b.storm_s + 0.2:.1f} s from 0.2 s before it")
    w("- values: median over the rounds (min–max); GoKV/Redis: ratio of the medians "
      "(spread: per-round ratios); with/without: median of each round's ratio; "
      "✓/✗: GoKV meets the target or not")
    w("")
    w("| # | figure | target | GoKV s1 | GoKV s2 | Redis |")
    w("|---|---|---|---|---|---|")
    for f in figs:
        w(f"| {f.fid} | {f.name} | {f.target or ''} | {f.text('gokv s1')} | "
          f"{f.text('gokv s2')} | {f.text('redis')} |")
    w("")
    w(f"CPU resolution: one clock tick ({1e6 / CLK_TCK:.0f} µs) is "
      f"{1e6 / CLK_TCK / b.n_p16:.3f} µs/op at -n {b.n_p16:,}.")
    storm = [r for s in SERVERS for r in b.runs.get(("4", s), [])]
    if storm:
        how = {r["count_how"] for r in storm if r["count_how"]}
        w(f"Keys reclaimed: counted with {', '.join(sorted(how)) or 'nothing (no count)'} "
          f"every 100 ms (Redis's DBSIZE counts expired keys until they are reclaimed).")
    for note in b.notes:
        w(f"Note: {note}.")
    if b.errors:
        w("")
        w("## Errors (the scenario did not run on that server)")
        w("")
        seen = set()
        for (scen, server), e in sorted(b.errors.items()):
            if scen.endswith("setup"):
                continue
            line = f"- scenario {scen}, {server}: {first_line(e)}"
            if line not in seen:
                seen.add(line)
                w(line)
    w("")
    w("## Commands")
    w("")
    w("```sh")
    w(shell_line(["scripts/bench-expiry.sh"] + user_args(sys.argv[1:])))
    seen = set()
    for argv in Server.started:
        key = (os.path.basename(argv[0]),
               argv[argv.index("--shards") + 1] if "--shards" in argv else "")
        if key not in seen:
            seen.add(key)
            w("# server")
            w(shell_line(b.launcher.redact(argv)))
    for (label, server), cmd in b.commands.items():
        w(f"# {label} [{server}]")
        w(cmd)
    w("```")
    return "\n".join(lines) + "\n"


def user_args(argv):
    """This run's flags as given to bench-expiry.sh (without the ones it adds itself)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--state-dir", "--gokv-bin", "--loadtest-bin"):
            skip = True
        elif not a.startswith(("--state-dir=", "--gokv-bin=", "--loadtest-bin=")):
            out.append(a)
    return out


def to_json(b, machine, figs):
    def key(k):
        return f"{k[0]} | {k[1]}"
    return {
        "machine": machine,
        "settings": {"rounds": b.args.rounds, "mem_rounds": b.args.mem_rounds,
                     "storm_rounds": b.args.storm_rounds, "quick": b.args.quick,
                     "keys": b.keys, "requests_p16": b.n_p16, "connections": CONNS,
                     "mem_keys": b.mem_keys, "storm_keys": b.storm_keys,
                     "storm_rate": b.storm_rate, "storm_connections": b.storm_conns,
                     "before_window_s": b.before_s, "storm_window_s": b.storm_s + 0.2,
                     "rss_timeout_s": b.rss_timeout, "auth": bool(b.auth)},
        "figures": [{"id": f.fid, "figure": f.name, "target": f.target, "unit": f.unit,
                     "values": f.cells} for f in figs],
        "errors": {key(k): v for k, v in b.errors.items()},
        "runs": {key(k): [strip_argv(r) for r in v] for k, v in b.runs.items()},
        "commands": {key(k): v for k, v in b.commands.items()},
    }


def strip_argv(r):
    if isinstance(r, dict):
        return {k: strip_argv(v) for k, v in r.items() if k != "argv"}
    return r


# ---------------------------------------------------------------------------------------------
# main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: small sizes, one round of each (under a minute)")
    ap.add_argument("--rounds", type=int, help="rounds of scenarios 1 and 2 (default 3)")
    ap.add_argument("--mem-rounds", type=int, help="rounds of scenario 3 (default 1)")
    ap.add_argument("--storm-rounds", type=int, help="rounds of scenario 4 (default 3)")
    ap.add_argument("--scenarios", default="1,2,3,4", help="which to run, e.g. 1,2 or 4")
    ap.add_argument("--keys", type=int, help="key space of 1, 2 and the storm's live keys "
                    "(default 100000)")
    ap.add_argument("-n", "--requests", type=int, help="redis-benchmark -n (default 1000000)")
    ap.add_argument("--mem-keys", type=int, help="keys in 3 (default 1000000)")
    ap.add_argument("--storm-keys", type=int, help="keys expiring at once in 4 "
                    "(default 1000000)")
    ap.add_argument("--storm-rate", type=int, help="GET/s of the steady load (default 20000)")
    ap.add_argument("--storm-window", type=float, help="seconds of load measured from the "
                    "deadline (default 5)")
    ap.add_argument("--rss-timeout", type=float, help="seconds RSS is polled after the "
                    "deadline at most (default 30)")
    ap.add_argument("--json", metavar="FILE", help="also write the table (and every run) as "
                    "JSON")
    ap.add_argument("--gokv-bin", default="target/release/gokv-server")
    ap.add_argument("--loadtest-bin", default="target/release/gokv-loadtest")
    ap.add_argument("--port-base", type=int, default=7800)
    ap.add_argument("--port-limit", type=int, default=7899)
    ap.add_argument("--out-dir", default="bench-results")
    ap.add_argument("--state-dir", help="scratch directory (default: a new temporary one)")
    args = ap.parse_args()
    one = 1 if args.quick else None
    args.rounds = args.rounds or one or 3
    args.mem_rounds = args.mem_rounds or 1
    args.storm_rounds = args.storm_rounds or one or 3
    scen = set(args.scenarios.split(","))
    if not scen <= {"1", "2", "3", "4"}:
        ap.error("--scenarios takes a comma-separated subset of 1,2,3,4")
    if min(args.rounds, args.mem_rounds, args.storm_rounds) < 1:
        ap.error("rounds must be at least 1")

    state = args.state_dir or tempfile.mkdtemp(prefix="gokv-bench-expiry-")
    pidfile = os.path.join(state, "pids")
    interrupt_on_signals()
    try:
        b = Bench(args, state, pidfile)
        machine = machine_info()
        print(f"machine: {machine['nproc']} cores ({machine['cpu']}), load average "
              f"{machine['load_before']}; auth {'on (user admin)' if b.auth else 'off'}",
              flush=True)
        if scen & {"1", "2"}:
            servers = [b.launcher.gokv(1, "s1"), b.launcher.redis("main"),
                       b.launcher.gokv(2, "s2")]
            try:
                b.throughput(servers)
            finally:
                for s in servers:
                    s.stop()
        if "3" in scen:
            b.memory()
        if "4" in scen:
            b.storm()
        machine["load_after"] = loadavg()
        figs = [f for f in build_figures(b) if f.fid[0] in scen]
        report = render(b, machine, figs)
        print()
        print(report)
        os.makedirs(args.out_dir, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        md = os.path.join(args.out_dir, f"expiry-{stamp}.md")
        with open(md, "w") as f:
            f.write(report)
        print(f"written: {md}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(to_json(b, machine, figs), f, indent=1)
            print(f"written: {args.json}")
        # Success means every Redis run and the report came through; GoKV errors are in it.
        return 1 if any(s == "redis" for _, s in b.errors) else 0
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


if __name__ == "__main__":
    sys.exit(main())
