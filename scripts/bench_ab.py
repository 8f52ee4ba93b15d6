#!/usr/bin/env python3
"""Before/after: two gokv-server binaries (and Redis 7) under the same redis-benchmark
commands, in interleaved rounds, on one machine at one time.

    scripts/bench_ab.py --base /tmp/gokv-before --new target/release/gokv-server \\
        --tests set,get,ping,echo --pipeline 16 --rounds 5

Each round runs every test against base, new and redis in turn (so a change in machine load
hits all three alike). Prints each run, then one markdown table: median ops/s (min-max), median
server CPU us/op (utime+stime from /proc), new/base and new/redis ratios.

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
import shutil
import signal
import statistics
import sys
import tempfile

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
    ap.add_argument("--pipeline", "-P", type=int, default=16)
    ap.add_argument("-n", type=int, default=1_000_000, help="requests per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--port-base", type=int, default=7700)
    args = ap.parse_args()
    tests = args.tests.split(",")
    for t in tests:
        if t not in TESTS:
            ap.error(f"unknown test {t!r}; known: {', '.join(TESTS)}")

    interrupt_on_signals()
    state = tempfile.mkdtemp(prefix="gokv-ab-")
    pidfile = os.path.join(state, "pids")
    auth = ("admin", secrets.token_hex(12))
    ports = Ports(args.port_base, args.port_base + 99)
    try:
        servers = []
        for name, binary in (("base", args.base), ("new", args.new)):
            port = ports.take()
            data = tempfile.mkdtemp(dir=state)
            argv = [binary, "--port", str(port), "--data-dir", data, "--shards",
                    str(args.shards), "--admin-password", auth[1]]
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

        results = {}
        for rnd in range(1, args.rounds + 1):
            for t in tests:
                for s in servers:
                    r = redis_benchmark(s, args.n, args.pipeline, command(t, s.kind), s.auth)
                    results.setdefault((t, s.name), []).append(r)
                    print(f"round {rnd} {t:5} {s.name:6} {r['ops']:>11,.0f} ops/s "
                          f"{r['cpu_us']:6.3f} us/op  p99 {r['p99_ms']:.3f} ms", flush=True)

        def med(t, name, key):
            return statistics.median(r[key] for r in results[(t, name)])

        def ratio(t, a, b, key):
            # A short run can see no CPU tick at all: no ratio then, not a crash.
            below = med(t, b, key)
            return f"{med(t, a, key) / below:.2f}" if below > 0 else "n/a"

        print()
        print(f"-P {args.pipeline}, -c 50, -n {args.n:,}, --shards {args.shards}, "
              f"{args.rounds} interleaved rounds; medians")
        print()
        print("| test | server | ops/s (min–max) | CPU µs/op | ops new/base | CPU new/base "
              "| ops new/redis | CPU new/redis |")
        print("|---|---|---|---|---|---|---|---|")
        for t in tests:
            for s in servers:
                ops = [r["ops"] for r in results[(t, s.name)]]
                row = [t, s.name, f"{statistics.median(ops):,.0f} ({min(ops):,.0f}–"
                       f"{max(ops):,.0f})", f"{med(t, s.name, 'cpu_us'):.3f}"]
                if s.name == "new":
                    row += [ratio(t, "new", "base", "ops"), ratio(t, "new", "base", "cpu_us")]
                    if not args.no_redis:
                        row += [ratio(t, "new", "redis", "ops"),
                                ratio(t, "new", "redis", "cpu_us")]
                print("| " + " | ".join(row + [""] * (8 - len(row))) + " |")
        return 0
    except RunFailed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"interrupted ({e or 'Ctrl-C'}); stopping the servers", file=sys.stderr)
        return 130
    finally:
        # No signal may cut the clean-up short: the servers run in their own sessions.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP, signal.SIGINT})
        stop_all()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
