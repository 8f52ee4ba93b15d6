#!/usr/bin/env python3
"""Before/after: two gokv-server binaries (and Redis 7) under the same redis-benchmark
commands, in interleaved rounds, on one machine at one time.

    scripts/bench_ab.py --base /tmp/gokv-before --new target/release/gokv-server \\
        --tests set,get,ping,echo --pipeline 1,16 --rounds 5

Each round runs every test, at every pipeline depth, against base, new and redis in turn (so
a change in machine load hits all three alike). Prints each run, then one markdown table:
median ops/s (min-max), median server CPU us/op (utime+stime from /proc, every thread of the
process: the metrics endpoint's included), new/base and new/redis ratios.

A build whose `--help` has `--metrics-port` gets its Prometheus endpoint on a free port of
its own (so the endpoint is on, as in production, and two runs or another server on 9379
never turn it off); `--no-metrics` gives it `--metrics-port 0` instead. `--scrape S` has a
thread scrape each such endpoint every S seconds during the runs (a Prometheus's load; off by
default). `--new-args '...'` adds flags to the new server's command line (settings off by
default, to measure them on).

Tests (GoKV form; Redis gets the same without the partition name):
  set   SET bench key:__rand_int__ <32 bytes>
  get   GET bench key:__rand_int__          (keys prefilled, so every GET hits)
  ping  -t ping_mbulk
  echo  ECHO <32 bytes>: the same request and reply sizes as get, and no data access: the
        "null mode" that GET's data path is measured against
  incr  INCR counters ctr:__rand_int__      (INT partition on GoKV)
"""

import argparse
import os
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_redis import (KEYSPACE, VALUE32, Ports, RunFailed, Server,  # noqa: E402
                            interrupt_on_signals, load_keys, redis_benchmark, resp_call,
                            stop_all)
from bench_vs_redis import rb_command as command  # noqa: E402

TESTS = ("set", "get", "ping", "echo", "incr")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="gokv-server binary before the change")
    ap.add_argument("--new", default="target/release/gokv-server", help="binary after")
    ap.add_argument("--tests", default="set,get", help=f"comma-separated, of {','.join(TESTS)}")
    ap.add_argument("--pipeline", "-P", default="16",
                    help="pipeline depths, comma-separated (1,16)")
    ap.add_argument("-n", type=int, default=1_000_000, help="requests per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--port-base", type=int, default=7700)
    ap.add_argument("--no-metrics", action="store_true",
                    help="--metrics-port 0 for builds that have a metrics endpoint")
    ap.add_argument("--scrape", type=float, default=0,
                    help="scrape each metrics endpoint every this many seconds (0: never)")
    ap.add_argument("--new-args", default="",
                    help="more flags for the new server, e.g. '--latency-monitor-threshold 1'")
    args = ap.parse_args()
    tests = args.tests.split(",")
    try:
        pipelines = [int(p) for p in args.pipeline.split(",")]
    except ValueError:
        ap.error(f"--pipeline takes comma-separated depths, got {args.pipeline!r}")
    for t in tests:
        if t not in TESTS:
            ap.error(f"unknown test {t!r}; known: {', '.join(TESTS)}")

    interrupt_on_signals()
    state = tempfile.mkdtemp(prefix="gokv-ab-")
    pidfile = os.path.join(state, "pids")
    auth = ("admin", secrets.token_hex(12))
    ports = Ports(args.port_base, args.port_base + 99)
    scraper = None
    try:
        servers = []
        endpoints = []
        for name, binary in (("base", args.base), ("new", args.new)):
            port = ports.take()
            data = tempfile.mkdtemp(dir=state)
            argv = [binary, "--port", str(port), "--data-dir", data, "--shards",
                    str(args.shards), "--admin-password", auth[1]]
            help_text = subprocess.run([binary, "--help"], capture_output=True,
                                       text=True).stdout
            if "--metrics-port" in help_text:
                metrics = 0 if args.no_metrics else ports.take()
                argv += ["--metrics-port", str(metrics)]
                if metrics:
                    endpoints.append(f"http://127.0.0.1:{metrics}/metrics")
                print(f"{name}: metrics endpoint "
                      + (f"on :{metrics}" if metrics else "off (--no-metrics)"), flush=True)
            else:
                print(f"{name}: no metrics endpoint in this build", flush=True)
            if name == "new":
                argv += shlex.split(args.new_args)
            servers.append(Server(name, "gokv", argv, port, os.path.join(state, name + ".log"),
                                  pidfile, auth))
        if not args.no_redis:
            port = ports.take()
            argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", state]
            servers.append(Server("redis", "redis", argv, port,
                                  os.path.join(state, "redis.log"), pidfile, None))
        for s in servers:
            if s.kind == "gokv":
                for name, schema in (("bench", "STRING"), ("counters", "INT")):
                    reply = resp_call(s.port, ["CREATE", "PARTITION", name, schema, "MEMORY"],
                                      auth)
                    if not reply.startswith(b"+OK"):
                        raise RunFailed(f"CREATE PARTITION {name} on {s.name}: {reply!r}")
            if "get" in tests:  # every GET hits: the data path, not the miss path
                part = [b"bench"] if s.kind == "gokv" else []
                load_keys(s.port, s.auth, [[b"SET"] + part + [b"key:%012d" % i, VALUE32.encode()]
                                           for i in range(KEYSPACE)])

        if args.scrape > 0 and endpoints:
            scraper = Scraper(endpoints, args.scrape)
        results = {}
        for rnd in range(1, args.rounds + 1):
            for p in pipelines:
                for t in tests:
                    for s in servers:
                        r = redis_benchmark(s, args.n, p, command(t, s.kind), s.auth)
                        results.setdefault((p, t, s.name), []).append(r)
                        print(f"round {rnd} P{p:<3} {t:5} {s.name:6} {r['ops']:>11,.0f} ops/s "
                              f"{r['cpu_us']:6.3f} us/op  p99 {r['p99_ms']:.3f} ms",
                              flush=True)

        def med(key, name, field):
            return statistics.median(r[field] for r in results[key + (name,)])

        def ratio(key, a, b, field):
            # A short run can see no CPU tick at all: no ratio then, not a crash.
            below = med(key, b, field)
            return f"{med(key, a, field) / below:.2f}" if below > 0 else "n/a"

        print()
        print(f"-c 50, -n {args.n:,}, --shards {args.shards}, {args.rounds} interleaved rounds; "
              f"metrics {'off' if args.no_metrics else 'on'}"
              + (f", scraped every {args.scrape:g} s" if scraper else "") + "; medians")
        print()
        print("| P | test | server | ops/s (min–max) | CPU µs/op | ops new/base | CPU new/base "
              "| ops new/redis | CPU new/redis |")
        print("|---|---|---|---|---|---|---|---|---|")
        for p in pipelines:
            for t in tests:
                for s in servers:
                    ops = [r["ops"] for r in results[(p, t, s.name)]]
                    row = [str(p), t, s.name, f"{statistics.median(ops):,.0f} ({min(ops):,.0f}–"
                           f"{max(ops):,.0f})", f"{med((p, t), s.name, 'cpu_us'):.3f}"]
                    if s.name == "new":
                        row += [ratio((p, t), "new", "base", "ops"),
                                ratio((p, t), "new", "base", "cpu_us")]
                        if not args.no_redis:
                            row += [ratio((p, t), "new", "redis", "ops"),
                                    ratio((p, t), "new", "redis", "cpu_us")]
                    print("| " + " | ".join(row + [""] * (9 - len(row))) + " |")
        if scraper:
            print(f"\n{scraper.done} scrapes, {scraper.failed} failed")
        return 0
    except RunFailed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"interrupted ({e or 'Ctrl-C'}); stopping the servers", file=sys.stderr)
        return 130
    finally:
        if scraper:
            scraper.stop()
        # No signal may cut the clean-up short: the servers run in their own sessions.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP, signal.SIGINT})
        stop_all()
        shutil.rmtree(state, ignore_errors=True)


class Scraper:
    """Scrapes every endpoint every `interval` seconds on a thread of its own, as a
    Prometheus would, until stop()."""

    def __init__(self, urls, interval):
        self.urls, self.interval = urls, interval
        self.done = self.failed = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping.wait(self.interval):
            for url in self.urls:
                try:
                    with urllib.request.urlopen(url, timeout=5) as reply:
                        reply.read()
                    self.done += 1
                except OSError:
                    self.failed += 1

    def stop(self):
        self.stopping.set()
        self.thread.join()


if __name__ == "__main__":
    sys.exit(main())
