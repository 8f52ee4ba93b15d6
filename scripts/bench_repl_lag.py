#!/usr/bin/env python3
"""Replication lag at a fixed write rate (issue 12's "Performance": p99 < 5 ms at 100k
writes/s), measured with timestamps in values.

A writer sends pipelined SETs to the primary at --rate writes/s (chunks every --tick ms, the
bytes built once); the first SET of every chunk is `SET <partition> clock <send time, ns>`. A
poller on the replica GETs `clock` in a loop: the first time it sees a value, that write's lag
is the time seen minus the time sent (the primary's processing, the stream, the replica's
apply, plus the poller's round trip, about one loopback GET). Prints p50/p90/p99/max over the
clock writes, and the write rate the primary actually took.

    bench_repl_lag.py --primary PORT --replica PORT --password PW [--rate N] [--seconds S]
"""
import argparse
import socket
import threading
import time


def cmd(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def connect(port, password):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(cmd("AUTH", "admin", password))
    assert s.recv(64).startswith(b"+OK"), "login failed"
    return s


def read_bulk(s, buf):
    """One bulk-string reply (or nil) from s; returns (value or None, rest of buf)."""
    while True:
        if buf.startswith(b"$-1\r\n"):
            return None, buf[5:]
        if buf.startswith(b"$"):
            head = buf.find(b"\r\n")
            if head > 0:
                n = int(buf[1:head])
                if len(buf) >= head + 2 + n + 2:
                    return buf[head + 2:head + 2 + n], buf[head + 2 + n + 2:]
        elif buf.startswith(b"-"):
            raise RuntimeError(buf)
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("the replica closed the connection")
        buf += chunk


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--primary", type=int, required=True)
    ap.add_argument("--replica", type=int, required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--partition", default="lag")
    ap.add_argument("--rate", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--tick", type=float, default=2.0, help="ms between chunks")
    a = ap.parse_args()

    per_chunk = max(1, int(a.rate * a.tick / 1000))
    value = b"v" * 32
    body = b"".join(cmd("SET", a.partition, b"key:%08d" % (i % 100_000), value)
                    for i in range(per_chunk - 1))
    w = connect(a.primary, a.password)
    sent = [0]
    done = threading.Event()

    def drain():  # replies are counted, not parsed: +OK\r\n each
        got = 0
        while not done.is_set() or got < sent[0] * 5:
            chunk = w.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        drain.replies = got // 5
    drain.replies = 0
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()

    seen = {}
    r = connect(a.replica, a.password)
    get = cmd("GET", a.partition, "clock")

    def poll():
        buf = b""
        while not done.is_set():
            r.sendall(get)
            v, buf = read_bulk(r, buf)
            now = time.monotonic_ns()
            if v is not None and v not in seen:
                seen[v] = now
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()

    start = time.monotonic()
    tick = a.tick / 1000
    n = 0
    while time.monotonic() - start < a.seconds:
        due = start + n * tick
        lag_behind = due - time.monotonic()
        if lag_behind > 0:
            time.sleep(lag_behind)
        stamp = time.monotonic_ns()
        w.sendall(cmd("SET", a.partition, "clock", stamp) + body)
        sent[0] += per_chunk
        n += 1
    took = time.monotonic() - start
    time.sleep(1.0)
    done.set()
    poller.join(timeout=5)
    reader.join(timeout=5)
    lags = sorted((t - int(v)) / 1e6 for v, t in seen.items())
    if not lags:
        raise SystemExit("the replica never showed a clock value")

    def q(p):
        return lags[min(len(lags) - 1, int(p * len(lags)))]
    print(f"writes sent: {sent[0]} in {took:.2f} s = {sent[0] / took:,.0f}/s "
          f"(target {a.rate:,}/s, {per_chunk} per {a.tick} ms chunk)")
    print(f"clock writes seen on the replica: {len(lags)} of {n}")
    print(f"lag ms: p50 {q(0.50):.3f}  p90 {q(0.90):.3f}  p99 {q(0.99):.3f}  "
          f"max {lags[-1]:.3f}")


if __name__ == "__main__":
    main()
