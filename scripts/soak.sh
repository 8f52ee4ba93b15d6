#!/usr/bin/env bash
# Bounded soak run against a release build: many connections with pipelines, garbage
# connections, reconnect storms and a slow reader, all at once; then checks that the server
# still answers, that its RSS stayed bounded, and that every key written is there. Every
# connection but the garbage ones logs in as `admin` (a throwaway password), so the reconnect
# storms also exercise logins.
#
#   scripts/soak.sh [SECONDS]      (default 30; needs python3; loopback only)
#
# Exit status 0 when every check passes. The server is always stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-30}"
RSS_LIMIT_MB="${RSS_LIMIT_MB:-512}"

cargo build --release -q -p gokv --bin gokv-server
DATA_DIR="$(mktemp -d)"
LOG="$DATA_DIR/server.log"
PW="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
GOKV_ADMIN_PASSWORD="$PW" RUST_LOG=info target/release/gokv-server --port 0 --data-dir "$DATA_DIR" \
  --client-output-limit 8mb --max-clients 4000 2>"$LOG" &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA_DIR"; }
trap cleanup EXIT

PORT=""
for _ in $(seq 100); do
  PORT="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$LOG" | head -1)"
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ] || { echo "soak: server did not start"; cat "$LOG"; exit 1; }
echo "soak: server pid $PID on port $PORT for ${DURATION}s"

timeout $((DURATION + 120)) python3 - "$PORT" "$PID" "$DURATION" "$RSS_LIMIT_MB" "$PW" <<'PY'
import os, random, socket, sys, threading, time

port, pid, duration, rss_limit_mb = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
password = sys.argv[5]
deadline = time.time() + duration
errors, written, peak_rss = [], {}, [0]
lock = threading.Lock()

def enc(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out

class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.f = self.s.makefile("rb")
        r = self.call("AUTH", "admin", password)
        if r != b"OK":
            raise RuntimeError("AUTH answered %r" % r)
    def reply(self):
        line = self.f.readline()
        if not line:
            raise EOFError("closed")
        t, rest = line[:1], line[1:-2]
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if t == b"*":
            return [self.reply() for _ in range(int(rest))]
        if t == b"-":
            return Exception(rest.decode())
        return rest
    def call(self, *args):
        self.s.sendall(enc(*args))
        return self.reply()
    def close(self):
        self.s.close()

def rss_mb():
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0

def guard(fn):
    def run(*a):
        try:
            fn(*a)
        except Exception as e:
            with lock:
                errors.append("%s: %r" % (fn.__name__, e))
    return run

@guard
def writer(i):
    c, n = Conn(), 0
    while time.time() < deadline:
        batch = [("s%d" % ((i + j) % 4), "w%d-%d" % (i, n + j), "v%d" % (n + j)) for j in range(200)]
        c.s.sendall(b"".join(enc("SET", *kv) for kv in batch))
        for kv in batch:
            r = c.reply()
            if r != b"OK":
                raise RuntimeError("SET answered %r" % r)
            with lock:
                written[(kv[0], kv[1])] = kv[2].encode()
        n += 200
    c.close()

@guard
def garbage(i):
    rnd = random.Random(i)
    while time.time() < deadline:
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        kind = rnd.randrange(4)
        payload = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 4096))),
                   b"*99999999999\r\n", b"*1\r\n$-7\r\n", b"GET a\x00b\r\n"][kind]
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except OSError:
            pass
        s.close()

@guard
def storm(i):
    while time.time() < deadline:
        conns = [Conn() for _ in range(100)]
        for c in conns:
            r = c.call("PING")
            if r != b"PONG":
                raise RuntimeError("PING answered %r" % r)
        for c in conns:
            c.close()

@guard
def slow_reader():
    c = Conn()
    c.s.settimeout(5)
    req = b"".join(enc("GET", "s%d" % (k % 4), "big") for k in range(2000))
    try:
        c.s.sendall(req)   # never reads: the server pauses it or cuts it off
    except OSError:
        pass
    time.sleep(max(0, deadline - time.time()))
    c.close()

@guard
def sampler():
    while time.time() < deadline + 1:
        peak_rss[0] = max(peak_rss[0], rss_mb())
        time.sleep(0.2)

admin = Conn()
for p in range(4):
    assert admin.call("CREATE", "PARTITION", "s%d" % p, "STRING", "MEMORY") == b"OK"
    assert admin.call("SET", "s%d" % p, "big", b"x" * 256 * 1024) == b"OK"
threads = [threading.Thread(target=writer, args=(i,)) for i in range(32)]
threads += [threading.Thread(target=garbage, args=(i,)) for i in range(4)]
threads += [threading.Thread(target=storm, args=(i,)) for i in range(2)]
threads += [threading.Thread(target=slow_reader), threading.Thread(target=sampler)]
for t in threads:
    t.start()
for t in threads:
    t.join()

ok = True
if errors:
    ok = False
    print("soak: errors:\n  " + "\n  ".join(errors[:10]))
if admin.call("PING") != b"PONG":
    ok = False
    print("soak: server does not answer")
missing = 0
keys = list(written.items())
for start in range(0, len(keys), 500):
    chunk = keys[start:start + 500]
    by_p = {}
    for (p, k), v in chunk:
        by_p.setdefault(p, []).append((k, v))
    for p, kvs in by_p.items():
        got = admin.call("MGET", p, *[k for k, _ in kvs])
        missing += sum(1 for (k, v), g in zip(kvs, got) if g != v)
info = admin.call("INFO", "stats").decode()
print("soak: %d keys written, %d missing; peak RSS %d MiB (limit %d MiB)" % (len(keys), missing, peak_rss[0], rss_limit_mb))
print("soak: " + " ".join(l for l in info.split("\r\n") if ":" in l))
if missing or not keys:
    ok = False
if peak_rss[0] > rss_limit_mb:
    ok = False
    print("soak: RSS over the bound")
print("soak: PASS" if ok else "soak: FAIL")
sys.exit(0 if ok else 1)
PY
