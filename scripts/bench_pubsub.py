#!/usr/bin/env python3
"""PUBLISH to many subscribers: GoKV (--shards 2) vs Redis 7, interleaved rounds.

Run through scripts/bench-pubsub.sh, which installs redis, builds the release binary and
cleans up after this script. Python 3 standard library only.

Per round and server: a drainer process connects --subscribers connections (on GoKV the
acceptor deals them over both shards; the script prints how many landed on each) and
SUBSCRIBEs them to one channel, then `redis-benchmark -c C -P P -n N PUBLISH bench:ch
<payload>` publishes; the PUBLISH rate is redis-benchmark's, and the drainer counts the
bytes its subscribers received, so the table also says what share of the messages arrived
(every one, unless a subscriber was dropped past its output limit). Both servers get the same
output limit for subscribers (32 MiB: Redis's pubsub hard limit).
"""

import argparse
import csv
import io
import multiprocessing
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PASSWORD = "bench-pw"
CHANNEL = "bench:ch"


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def call(port, auth, *args):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        if auth:
            s.sendall(resp("AUTH", "admin", PASSWORD))
            s.recv(1024)
        s.sendall(resp(*args))
        time.sleep(0.1)
        return s.recv(1 << 20)


def wait_ready(port, auth, proc):
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited at start")
        try:
            if call(port, auth, "PING").startswith(b"+PONG"):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"no PONG on port {port}")


def free_port(start):
    """The first port from `start` nobody listens on."""
    for port in range(start, start + 200):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port from {start}")


def frame_len(payload):
    return len(b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(CHANNEL), CHANNEL.encode(), len(payload), payload.encode()))


def drain(port, auth, subscribers, ready, stop, result):
    """Subscribes `subscribers` connections and counts what they receive until `stop`."""
    sel = selectors.DefaultSelector()
    conns = []
    for _ in range(subscribers):
        s = socket.create_connection(("127.0.0.1", port))
        if auth:
            s.sendall(resp("AUTH", "admin", PASSWORD))
            assert s.recv(64).startswith(b"+OK")
        s.sendall(resp("SUBSCRIBE", CHANNEL))
        confirmation = b""
        while not confirmation.endswith(b":1\r\n"):
            confirmation += s.recv(256)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        conns.append(s)
    ready.set()
    total = 0
    closed = 0
    while not stop.is_set():
        for key, _ in sel.select(timeout=0.1):
            try:
                data = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(key.fileobj)
                closed += 1
                continue
            total += len(data)
    result.put((total, closed))


def run_once(name, port, auth, args):
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    result = multiprocessing.Queue()
    drainer = multiprocessing.Process(
        target=drain, args=(port, auth, args.subscribers, ready, stop, result))
    drainer.start()
    if not ready.wait(30):
        raise RuntimeError("subscribers not ready")
    bench = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c",
             str(args.publishers), "-n", str(args.requests), "-P", str(args.pipeline), "--csv"]
    if auth:
        bench += ["--user", "admin", "-a", PASSWORD]
    payload = "x" * args.payload
    out = subprocess.run(bench + ["PUBLISH", CHANNEL, payload], capture_output=True,
                         text=True, check=True).stdout
    rows = list(csv.reader(io.StringIO(out)))
    rps = float(rows[-1][1])
    # Let the last messages arrive.
    time.sleep(1.0)
    stop.set()
    total, closed = result.get(timeout=30)
    drainer.join(10)
    delivered = total / frame_len(payload) / (args.requests * args.subscribers)
    print(f"  {name}: {rps:,.0f} PUBLISH/s, {delivered:.1%} of the messages arrived, "
          f"{closed} subscribers dropped", file=sys.stderr)
    return rps, delivered, closed


def shard_spread(port):
    text = call(port, True, "CLIENT", "LIST", "TYPE", "pubsub").decode(errors="replace")
    spread = {}
    for line in text.splitlines():
        if "shard=" in line:
            shard = line.rsplit("shard=", 1)[1].strip()
            spread[shard] = spread.get(shard, 0) + 1
    return spread


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gokv-bin", default="target/release/gokv-server")
    ap.add_argument("--loadtest-bin", help="(unused)")
    ap.add_argument("--state-dir")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--publishers", type=int, default=10)
    ap.add_argument("--pipeline", type=int, default=16)
    ap.add_argument("--payload", type=int, default=16)
    ap.add_argument("--port-base", type=int, default=7700)
    args = ap.parse_args()
    state = args.state_dir or tempfile.mkdtemp(prefix="gokv-bench-pubsub.")
    limit = str(32 << 20)
    gokv_port = free_port(args.port_base)
    redis_port = free_port(gokv_port + 1)
    os.makedirs(os.path.join(state, "gokv"), exist_ok=True)
    servers = []
    pids = open(os.path.join(state, "pids"), "a")
    try:
        gokv = subprocess.Popen(
            [args.gokv_bin, "--bind", "127.0.0.1", "--port", str(gokv_port), "--shards", "2",
             "--data-dir", os.path.join(state, "gokv"), "--admin-password", PASSWORD,
             "--metrics-port", "0", "--client-output-limit", limit],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        servers.append(gokv)
        pids.write(f"{gokv.pid}\n")
        redis = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
             "--appendonly", "no", "--client-output-buffer-limit", f"pubsub {limit} 0 0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        servers.append(redis)
        pids.write(f"{redis.pid}\n")
        pids.flush()
        wait_ready(gokv_port, True, gokv)
        wait_ready(redis_port, False, redis)
        results = {"GoKV (2 shards)": [], "Redis 7": []}
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
            for name, port, auth in [("GoKV (2 shards)", gokv_port, True),
                                     ("Redis 7", redis_port, False)]:
                results[name].append(run_once(name, port, auth, args))
        # Where GoKV's subscribers lived (one more set, subscribed just to be listed).
        ready, stop = multiprocessing.Event(), multiprocessing.Event()
        q = multiprocessing.Queue()
        d = multiprocessing.Process(target=drain,
                                    args=(gokv_port, True, args.subscribers, ready, stop, q))
        d.start()
        ready.wait(30)
        spread = shard_spread(gokv_port)
        stop.set()
        q.get(timeout=30)
        d.join(10)
        print()
        print(f"PUBLISH of {args.payload}-byte messages to {args.subscribers} subscribers "
              f"(GoKV's per shard: {spread}), redis-benchmark -c {args.publishers} "
              f"-P {args.pipeline} -n {args.requests}, {args.rounds} interleaved rounds, "
              f"{os.cpu_count()} CPUs")
        print()
        print("| server | PUBLISH/s (median) | min - max | messages delivered/s | arrived | dropped |")
        print("|---|---|---|---|---|---|")
        for name, runs in results.items():
            rps = [x[0] for x in runs]
            med = statistics.median(rps)
            arrived = min(x[1] for x in runs)
            dropped = max(x[2] for x in runs)
            print(f"| {name} | {med:,.0f} | {min(rps):,.0f} - {max(rps):,.0f} | "
                  f"{med * args.subscribers:,.0f} | {arrived:.1%} | {dropped} |")
        g = statistics.median(x[0] for x in results["GoKV (2 shards)"])
        rd = statistics.median(x[0] for x in results["Redis 7"])
        print()
        print(f"GoKV / Redis: {g / rd:.2f}x")
    finally:
        for p in servers:
            p.terminate()
        for p in servers:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if not args.state_dir:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
