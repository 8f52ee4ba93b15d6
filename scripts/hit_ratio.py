#!/usr/bin/env python3
"""Hit ratio of eviction policies on a zipf trace (issue 11's quality benchmark).

A trace of REQUESTS key numbers over KEYS keys, zipf(S) distributed, from a fixed seed, is run
as a cache does: GET the key; on a miss, SET it. The cache holds CACHE keys. Printed, one
table:

- exact LRU and random eviction, simulated here on the same trace (the references);
- Redis 7 (a real redis-server, --redis): allkeys-lru, allkeys-lfu, allkeys-random, with
  maxmemory sized to hold about CACHE keys of the trace's shape (measured, then DBSIZE at the
  end is printed so the reader sees what it held);
- GoKV over the wire (a real gokv-server, --gokv): a partition with `max-keys CACHE` and each
  policy; skipped, with a note, when the server does not know the partition options;
- GoKV's store alone (--store, the `hit_ratio` example binary): the same replay against a
  `Partition`, no sockets.

Every request is sent on one connection and waited for (no pipelining): the GET/miss/SET
logic needs each reply, and Redis's LRU clock (one second) sees the request rate a client
sees. Python standard library only.

    scripts/hit_ratio.py [--requests N] [--keys N] [--cache N] [--seed N]
                         [--redis PATH] [--gokv PATH] [--store PATH] [--trace-out FILE]
"""

import argparse
import bisect
import collections
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

VALUE = b"v" * 16


def zipf_trace(requests, keys, s, seed):
    """Key numbers 0..keys-1, rank r drawn with probability ~ 1 / (r+1)^s (inverse CDF)."""
    weights = [1.0 / (r + 1) ** s for r in range(keys)]
    total = sum(weights)
    cdf, acc = [], 0.0
    for w in weights:
        acc += w / total
        cdf.append(acc)
    rng = random.Random(seed)
    # Ranks are mapped to key numbers by a fixed permutation, so that hot keys are not
    # neighbours in any name order.
    perm = list(range(keys))
    random.Random(seed + 1).shuffle(perm)
    return [perm[min(bisect.bisect_left(cdf, rng.random()), keys - 1)] for _ in range(requests)]


def exact_lru(trace, cache):
    lru = collections.OrderedDict()
    hits = 0
    for k in trace:
        if k in lru:
            lru.move_to_end(k)
            hits += 1
        else:
            if len(lru) >= cache:
                lru.popitem(last=False)
            lru[k] = True
    return hits / len(trace)


def random_eviction(trace, cache, seed):
    rng = random.Random(seed)
    slots, where = [], {}
    hits = 0
    for k in trace:
        if k in where:
            hits += 1
            continue
        if len(slots) >= cache:
            i = rng.randrange(len(slots))
            del where[slots[i]]
            slots[i] = k
            where[k] = i
        else:
            where[k] = len(slots)
            slots.append(k)
    return hits / len(trace)


class Resp:
    """A minimal blocking RESP2 client: one request, one reply."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2 :]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError("unexpected reply %r" % line)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port, proc, what):
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit("%s exited at start (status %s)" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("%s did not start listening on %d" % (what, port))


def replay(call_get, call_set, trace):
    hits = 0
    for k in trace:
        key = b"key:%d" % k
        if call_get(key) is not None:
            hits += 1
        else:
            call_set(key)
    return hits / len(trace)


def info_field(info, name):
    for line in info.decode().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


def run_redis(path, trace, cache, policies):
    port = free_port()
    proc = subprocess.Popen(
        [path, "--port", str(port), "--save", "", "--appendonly", "no",
         "--maxmemory-samples", "5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {}
    try:
        wait_for(port, proc, "redis-server")
        r = Resp(port)
        # maxmemory for about `cache` keys of this shape: what `cache` of them add to
        # used_memory, on top of the server's baseline; then corrected, twice, by how many
        # keys a server at that maxmemory holds after writing more than fit.
        r.call("FLUSHALL")
        base = int(info_field(r.call("INFO", "memory"), "used_memory"))
        for k in range(cache):
            r.call("SET", b"key:%d" % (10_000_000 + k), VALUE)
        full = int(info_field(r.call("INFO", "memory"), "used_memory"))
        per_key = (full - base) / cache
        for _ in range(2):
            r.call("FLUSHALL")
            r.call("CONFIG", "SET", "maxmemory-policy", "allkeys-random")
            r.call("CONFIG", "SET", "maxmemory", str(int(base + per_key * cache)))
            for k in range(cache * 3 // 2):
                r.call("SET", b"key:%d" % (20_000_000 + k), VALUE)
            per_key *= cache / r.call("DBSIZE")
            r.call("CONFIG", "SET", "maxmemory", "0")
        r.call("FLUSHALL")
        maxmemory = int(base + per_key * cache)
        for policy in policies:
            # A run whose cache ended more than 1% off `cache` keys is run again with
            # maxmemory corrected by what it held (at most twice).
            for attempt in range(3):
                r.call("FLUSHALL")
                r.call("CONFIG", "SET", "maxmemory", "0")
                r.call("CONFIG", "RESETSTAT")
                r.call("CONFIG", "SET", "maxmemory-policy", policy)
                r.call("CONFIG", "SET", "maxmemory", str(maxmemory))
                start = time.time()
                ratio = replay(lambda k: r.call("GET", k),
                               lambda k: r.call("SET", k, VALUE), trace)
                held = r.call("DBSIZE")
                evicted = info_field(r.call("INFO", "stats"), "evicted_keys")
                results[policy] = (ratio, "held %d keys, %s evicted, %.1fs" % (
                    held, evicted, time.time() - start))
                if abs(held - cache) <= cache // 100:
                    break
                maxmemory = int(base + (maxmemory - base) * cache / held)
    finally:
        proc.terminate()
        proc.wait()
    return results


def run_gokv(path, trace, cache, policies):
    port = free_port()
    data = tempfile.mkdtemp(prefix="gokv-hit-ratio-")
    pw = "hit-ratio-pw"
    proc = subprocess.Popen(
        [path, "--port", str(port), "--shards", "1", "--data-dir", data,
         "--admin-password", pw],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {}
    try:
        wait_for(port, proc, "gokv-server")
        r = Resp(port)
        r.call("AUTH", "admin", pw)
        for policy in policies:
            name = "hr_" + policy.replace("-", "_")
            try:
                r.call("CREATE", "PARTITION", name, "STRING", "MEMORY",
                       "max-keys", str(cache), "eviction", policy)
            except RuntimeError as e:
                return {"note": "gokv-server does not take the partition options (%s)" % e}
            start = time.time()
            ratio = replay(lambda k: r.call("GET", name, k),
                           lambda k: r.call("SET", name, k, VALUE), trace)
            stats = r.call("STATS", "PARTITION", name)
            if isinstance(stats, list):
                stats = dict(zip(stats[0::2], stats[1::2]))
                held = stats.get(b"keys")
                evicted = stats.get(b"evicted_keys")
            else:
                held = evicted = "?"
            results[policy] = (ratio, "held %s keys, %s evicted, %.1fs" % (
                held, evicted, time.time() - start))
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)
    return results


def run_store(path, trace_file, cache, policies):
    out = subprocess.run([path, trace_file, str(cache)] + policies,
                         check=True, capture_output=True, text=True).stdout
    results = {}
    for line in out.splitlines():
        policy, ratio, evictions, seconds = line.split()
        results[policy] = (float(ratio), "%s evictions, %ss" % (evictions, seconds))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=300_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--cache", type=int, default=10_000)
    ap.add_argument("--zipf", type=float, default=0.99)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--redis", help="redis-server binary (skipped when absent)")
    ap.add_argument("--gokv", help="gokv-server binary (skipped when absent)")
    ap.add_argument("--store", help="the hit_ratio example binary (skipped when absent)")
    ap.add_argument("--trace-out", help="also keep the trace in this file")
    args = ap.parse_args()

    trace = zipf_trace(args.requests, args.keys, args.zipf, args.seed)
    trace_file = args.trace_out or tempfile.mkstemp(prefix="zipf-trace-")[1]
    with open(trace_file, "w") as f:
        f.write("\n".join(map(str, trace)) + "\n")

    rows = [("exact LRU (simulated)", exact_lru(trace, args.cache), ""),
            ("random (simulated)", random_eviction(trace, args.cache, args.seed), "")]
    policies = ["allkeys-lru", "allkeys-lfu", "allkeys-random"]
    notes = []
    if args.redis:
        for p, (ratio, note) in run_redis(args.redis, trace, args.cache, policies).items():
            rows.append(("Redis 7 " + p, ratio, note))
    if args.gokv:
        res = run_gokv(args.gokv, trace, args.cache, policies)
        if "note" in res:
            notes.append(res["note"])
        else:
            for p, (ratio, note) in res.items():
                rows.append(("GoKV " + p, ratio, note))
    if args.store:
        for p, (ratio, note) in run_store(args.store, trace_file, args.cache, policies).items():
            rows.append(("GoKV store " + p, ratio, note))
    if not args.trace_out:
        os.unlink(trace_file)

    print("zipf(%.2f), %d requests over %d keys, cache %d keys, seed %d; GET, on miss SET"
          % (args.zipf, args.requests, args.keys, args.cache, args.seed))
    print()
    print("| %-30s | %-9s | %s" % ("", "hit ratio", "notes"))
    print("|%s|%s|%s" % ("-" * 32, "-" * 11, "-" * 8))
    for name, ratio, note in rows:
        print("| %-30s | %9.4f | %s" % (name, ratio, note))
    for n in notes:
        print("\nnote:", n)
    exact = rows[0][1]
    by_name = {name: ratio for name, ratio, _ in rows}
    checks = []
    for lru in ("GoKV allkeys-lru", "GoKV store allkeys-lru"):
        if lru in by_name:
            checks.append("%s - exact LRU = %+.4f (issue: >= -0.012)" % (lru, by_name[lru] - exact))
    for lfu in ("GoKV allkeys-lfu", "GoKV store allkeys-lfu"):
        if lfu in by_name and "Redis 7 allkeys-lfu" in by_name:
            checks.append("%s - Redis 7 allkeys-lfu = %+.4f (issue: >= -0.010)"
                          % (lfu, by_name[lfu] - by_name["Redis 7 allkeys-lfu"]))
    if checks:
        print()
        for c in checks:
            print(c)


if __name__ == "__main__":
    main()
