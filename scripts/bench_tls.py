#!/usr/bin/env python3
"""GoKV vs Redis 7 over TLS (and over plain TCP, for the cost of TLS), run by
scripts/bench-tls.sh.

  * makes a test CA and certificates (scripts/gen-test-certs.sh) in the state directory;
  * starts GoKV (--shards 1 and --shards 2, each with a plain port and a TLS port, --tls-auth-clients no) and Redis 7
    (persistence off, a plain port and a TLS port with the same certificate, --tls-auth-clients
    no), both on 127.0.0.1;
  * throughput: redis-benchmark [--tls] -c 50 -P 16 and -P 1, SET then GET (32-byte values,
    100000 random keys), TLS and plain, in interleaved rounds (every case against GoKV, then
    Redis, each round); per case the median ops/s over the rounds and the server's CPU per
    operation (utime+stime from /proc/<pid>/stat before and after the run, over the requests);
  * new TLS connections per second: redis-benchmark --tls -k 0 (a full handshake per request,
    PING), and a Python ssl loop (connect, handshake, PING, close; one client) without and with
    session resumption (the first connection's session, TLS 1.3 ticket, offered by every later
    one), with the server's CPU per handshake.

GoKV runs as a user bound to partition `bench` (the Redis face: plain SET/GET), as in
scripts/bench-vs-redis.sh scenario 7. The machine's cores are shared by the servers and the
clients: numbers are for comparing the two servers in one run, not absolute.
"""

import argparse
import os
import secrets
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
VALUE = "x" * 32
KEYSPACE = 100_000
CONNS = 50


def proc_cpu_seconds(pid):
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[14 - 3]) + int(fields[15 - 3])) / CLK_TCK


def wait_port(port, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


class Server:
    def __init__(self, name, argv, port, tls_port, log, pidfile, user=None, password=None):
        self.name, self.port, self.tls_port = name, port, tls_port
        self.user, self.password = user, password
        self.log = open(log, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        with open(pidfile, "a") as f:
            f.write(f"{self.proc.pid}\n")
        wait_port(port)
        wait_port(tls_port)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def cli(server, *cmd, user=None, password=None):
    argv = ["redis-cli", "-h", "127.0.0.1", "-p", str(server.port)]
    if user:
        argv += ["--user", user, "--pass", password, "--no-auth-warning"]
    out = subprocess.run(argv + list(cmd), capture_output=True, text=True, check=True).stdout
    return out.strip()


def bench(server, certs, tls, pipeline, test, requests):
    """One redis-benchmark run: (ops/s, server CPU µs per op)."""
    port = server.tls_port if tls else server.port
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(CONNS),
            "-P", str(pipeline), "-n", str(requests), "-r", str(KEYSPACE), "-d", str(len(VALUE)),
            "-t", test, "--csv"]
    if tls:
        argv += ["--tls", "--cacert", os.path.join(certs, "ca.crt")]
    if server.user:
        argv += ["--user", server.user, "-a", server.password]
    before = proc_cpu_seconds(server.proc.pid)
    out = subprocess.run(argv, capture_output=True, text=True)
    after = proc_cpu_seconds(server.proc.pid)
    if out.returncode != 0 or "ERR" in out.stdout + out.stderr:
        raise RuntimeError(f"{' '.join(argv)}: {out.stdout} {out.stderr}")
    rps = None
    for line in out.stdout.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells and cells[0].upper() == test.upper():
            rps = float(cells[1])
    if rps is None:
        raise RuntimeError(f"no {test} result in {out.stdout}")
    return rps, (after - before) / requests * 1e6


def reconnects(server, certs, requests):
    """redis-benchmark --tls -k 0: a new connection (full handshake) per PING."""
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.tls_port), "-c", "10",
            "-n", str(requests), "-k", "0", "-t", "ping_inline", "--csv", "--tls",
            "--cacert", os.path.join(certs, "ca.crt")]
    if server.user:
        argv += ["--user", server.user, "-a", server.password]
    before = proc_cpu_seconds(server.proc.pid)
    out = subprocess.run(argv, capture_output=True, text=True)
    after = proc_cpu_seconds(server.proc.pid)
    if out.returncode != 0 or "ERR" in out.stdout + out.stderr:
        raise RuntimeError(f"{' '.join(argv)}: {out.stdout} {out.stderr}")
    for line in out.stdout.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells and cells[0].startswith("PING"):
            return float(cells[1]), (after - before) / requests * 1e6
    raise RuntimeError(f"no PING result in {out.stdout}")


def handshakes(server, certs, seconds, resume):
    """A Python ssl loop: connect, handshake, PING, close, for `seconds`; with `resume`, every
    connection offers the session of the first. (handshakes/s, server CPU µs per handshake,
    share of connections that resumed)."""
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.crt"))
    ctx.check_hostname = False
    session, done, resumed = None, 0, 0
    before = proc_cpu_seconds(server.proc.pid)
    start = time.time()
    while time.time() - start < seconds:
        raw = socket.create_connection(("127.0.0.1", server.tls_port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = ctx.wrap_socket(raw, server_hostname="localhost",
                            session=session if resume else None)
        s.sendall(b"PING\r\n")
        if not s.recv(64).startswith(b"+PONG"):
            raise RuntimeError("no PONG")
        if resume and session is None:
            session = s.session
        resumed += s.session_reused
        s.close()
        done += 1
    elapsed = time.time() - start
    after = proc_cpu_seconds(server.proc.pid)
    return done / elapsed, (after - before) / done * 1e6, resumed / done


def median(values):
    return statistics.median(values)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--gokv-bin", required=True)
    ap.add_argument("--loadtest-bin")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--port-base", type=int, default=7700)
    ap.add_argument("--requests-p16", type=int, default=1_000_000)
    ap.add_argument("--requests-p1", type=int, default=100_000)
    ap.add_argument("--handshake-seconds", type=float, default=3.0)
    args = ap.parse_args()

    state = args.state_dir
    certs = os.path.join(state, "certs")
    subprocess.run(["bash", "scripts/gen-test-certs.sh", certs], check=True,
                   stdout=subprocess.DEVNULL)
    pidfile = os.path.join(state, "pids")
    base = args.port_base
    pw = secrets.token_hex(12)
    tls_files = ["--tls-cert-file", os.path.join(certs, "server.crt"),
                 "--tls-key-file", os.path.join(certs, "server.key"),
                 "--tls-ca-cert-file", os.path.join(certs, "ca.crt"),
                 "--tls-auth-clients", "no"]
    gokvs = []
    for i, shards in enumerate((1, 2)):
        port = base + 4 + 2 * i
        g = Server(f"gokv-s{shards}", [args.gokv_bin, "--port", str(port), "--tls-port",
                                       str(port + 1), "--data-dir", tempfile.mkdtemp(dir=state),
                                       "--shards", str(shards), "--admin-password", pw,
                                       "--metrics-port", "0"] + tls_files,
                   port, port + 1, os.path.join(state, f"gokv-s{shards}.log"), pidfile)
        cli(g, "CREATE", "PARTITION", "bench", "STRING", "MEMORY", user="admin", password=pw)
        cli(g, "CREATE", "USER", "bench", pw, "DEFAULT", "bench", user="admin", password=pw)
        for perm in ("READ", "WRITE"):
            cli(g, "GRANT", perm, "ON", "bench", "TO", "bench", user="admin", password=pw)
        g.user, g.password = "bench", pw
        gokvs.append(g)
    redis = Server("redis", ["redis-server", "--port", str(base + 2), "--tls-port", str(base + 3),
                             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--daemonize", "no", "--dir", state] + tls_files,
                   base + 2, base + 3, os.path.join(state, "redis.log"), pidfile)
    servers = gokvs + [redis]
    cases = [(tls, p, t) for tls in (True, False) for p in (16, 1) for t in ("set", "get")]
    results = {}
    try:
        for r in range(args.rounds):
            print(f"== round {r + 1}/{args.rounds}", file=sys.stderr)
            for case in cases:
                tls, p, t = case
                n = args.requests_p16 if p == 16 else args.requests_p1
                for server in servers:
                    results.setdefault((server.name,) + case, []).append(
                        bench(server, certs, tls, p, t, n))
            for server in servers:
                results.setdefault((server.name, "reconnect"), []).append(
                    reconnects(server, certs, 5000))
                for resume in (False, True):
                    results.setdefault((server.name, "handshake", resume), []).append(
                        handshakes(server, certs, args.handshake_seconds, resume))
    finally:
        for server in servers:
            server.stop()

    def cell(key, i):
        return median([v[i] for v in results[key]])

    print(f"\n{args.rounds} interleaved rounds; redis-benchmark -c {CONNS} -r {KEYSPACE} "
          f"-d {len(VALUE)}; GoKV --shards 1 and 2 (s1, s2); medians; CPU = server "
          f"utime+stime per op; x: GoKV / Redis\n")
    print("| case | Redis ops/s | GoKV s1 ops/s | GoKV s2 ops/s | Redis CPU µs/op "
          "| GoKV s1 CPU µs/op | GoKV s2 CPU µs/op |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    names = ["gokv-s1", "gokv-s2"]
    for tls, p, t in cases:
        rd = ("redis", tls, p, t)
        row = [f"{'TLS' if tls else 'plain'} -P {p} {t.upper()}", f"{cell(rd, 0):,.0f}"]
        row += [f"{cell((n, tls, p, t), 0):,.0f} ({cell((n, tls, p, t), 0) / cell(rd, 0):.2f}x)"
                for n in names]
        row.append(f"{cell(rd, 1):.2f}")
        row += [f"{cell((n, tls, p, t), 1):.2f} ({cell((n, tls, p, t), 1) / cell(rd, 1):.2f}x)"
                for n in names]
        print("| " + " | ".join(row) + " |")
    print("\n| cost of TLS: TLS / plain | Redis ops/s | GoKV s1 | GoKV s2 | Redis CPU/op "
          "| GoKV s1 CPU/op | GoKV s2 CPU/op |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for p in (16, 1):
        for t in ("set", "get"):
            row = [f"-P {p} {t.upper()}"]
            for i in (0, 1):
                for name in ["redis"] + names:
                    row.append(f"{cell((name, True, p, t), i) / cell((name, False, p, t), i):.2f}x")
            print("| " + " | ".join(row) + " |")
    print("\n| new TLS connections/s (server CPU µs per connection) | Redis | GoKV s1 | GoKV s2 |")
    print("|---|---:|---:|---:|")
    rows = [("redis-benchmark -k 0 -c 10, PING (full handshakes)", ("reconnect",))]
    rows += [(f"Python ssl, 1 client, {'with' if r else 'without'} resumption", ("handshake", r))
             for r in (False, True)]
    for label, key in rows:
        rd = ("redis",) + key
        row = [label, f"{cell(rd, 0):,.0f} ({cell(rd, 1):.0f} µs)"]
        row += [f"{cell((n,) + key, 0):,.0f} ({cell((n,) + key, 1):.0f} µs, "
                f"{cell((n,) + key, 0) / cell(rd, 0):.2f}x)" for n in names]
        print("| " + " | ".join(row) + " |")
    for n in ["redis"] + names:
        print(f"- {n}: {cell((n, 'handshake', True), 2):.0%} of the connections offering a "
              f"session resumed it")
    with open("/proc/loadavg") as f:
        print(f"\nload average at the end: {f.read().split()[0:3]}")


if __name__ == "__main__":
    main()
