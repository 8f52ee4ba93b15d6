#!/usr/bin/env bash
# Login storm vs. steady reads: p99 of a steady GET load, alone and while 200 connections
# keep authenticating, to show that password hashing (argon2id, tens of ms) never stalls a
# shard's other clients.
#
#   scripts/auth-storm.sh [shards] [seconds]
#
# Needs redis-benchmark (apt-get install redis-tools) and a release build
# (cargo build --release). Three runs of the same GET load (20 clients, 1 request each in
# flight), each printing redis-benchmark's latency summary:
#   1. baseline: no logins;
#   2. reconnect storm: redis-benchmark -c 200 -k 0 (a new connection and AUTH per request),
#      the same user and password each time (the shards' login caches answer);
#   3. wrong-password storm: 200 connections failing AUTH over and over, so every attempt
#      runs argon2 in full (the cache only remembers successes).
set -euo pipefail
cd "$(dirname "$0")/.."

SHARDS=${1:-2}
SECONDS_PER_RUN=${2:-10}
PW=storm-admin-pw
DIR=$(mktemp -d)
PORT=7399
BIN=target/release/gokv-server

cleanup() {
  [[ -n "${SERVER:-}" ]] && kill "$SERVER" 2>/dev/null || true
  [[ -n "${STORM:-}" ]] && kill "$STORM" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

RUST_LOG=warn "$BIN" --port "$PORT" --shards "$SHARDS" --data-dir "$DIR" \
  --admin-password "$PW" 2>"$DIR/server.log" &
SERVER=$!
for _ in $(seq 50); do
  redis-cli -p "$PORT" PING >/dev/null 2>&1 && break
  sleep 0.1
done
cli() { redis-cli -p "$PORT" --user admin --pass "$PW" --no-auth-warning "$@" >/dev/null; }
cli CREATE PARTITION p STRING MEMORY
cli CREATE USER stormer stormer-pw
cli SET p k value

connections() {
  redis-cli -p "$PORT" --user admin --pass "$PW" --no-auth-warning INFO stats |
    tr -d '\r' | awk -F: '/total_connections_received/ {print $2}'
}

get_load() {
  # ~N requests so that the run lasts about SECONDS_PER_RUN at the baseline rate.
  redis-benchmark -p "$PORT" --user admin -a "$PW" -c 20 -n "$1" --precision 3 GET p k 2>/dev/null |
    grep -A2 -E "latency summary" | tail -1 |
    awk '{printf "  avg %s ms  min %s  p50 %s  p95 %s  p99 %s  max %s\n", $1, $2, $3, $4, $5, $6}'
}

# Calibrate the request count on a short run.
RATE=$(redis-benchmark -p "$PORT" --user admin -a "$PW" -c 20 -n 50000 -q GET p k 2>/dev/null |
  grep -oE '[0-9.]+ requests per second' | cut -d' ' -f1 | cut -d. -f1)
N=$((RATE * SECONDS_PER_RUN))
echo "GET load: 20 clients, $N requests (~${SECONDS_PER_RUN}s at $RATE req/s), $SHARDS shards"

echo "1. baseline (no logins):"
get_load "$N"

echo "2. reconnect storm (redis-benchmark -c 200 -k 0: new connection + AUTH per request):"
redis-benchmark -p "$PORT" --user stormer -a stormer-pw -c 200 -k 0 -n 100000000 PING \
  >/dev/null 2>&1 &
STORM=$!
sleep 1
BEFORE=$(connections); START=$(date +%s.%N)
get_load "$N"
AFTER=$(connections); END=$(date +%s.%N)
echo "  storm: $(( AFTER - BEFORE )) new connections, each AUTH'd, in $(echo "$END - $START" | bc) s"
kill "$STORM" 2>/dev/null || true
wait "$STORM" 2>/dev/null || true
STORM=

echo "3. wrong-password storm (200 connections, every AUTH fails: full argon2 each):"
python3 - "$PORT" <<'EOF' &
import socket, sys, threading
port = int(sys.argv[1])
done = [0]
def worker():
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port))
            for _ in range(9):  # below the 10-failure close
                s.sendall(b"*3\r\n$4\r\nAUTH\r\n$7\r\nstormer\r\n$5\r\nwrong\r\n")
                s.recv(256)
                done[0] += 1
            s.close()
        except OSError:
            pass
for _ in range(200):
    threading.Thread(target=worker, daemon=True).start()
threading.Event().wait()
EOF
STORM=$!
sleep 1
FAILS_BEFORE=$(grep -c "failed login" "$DIR/server.log" || true); START=$(date +%s.%N)
get_load "$N"
FAILS_AFTER=$(grep -c "failed login" "$DIR/server.log" || true); END=$(date +%s.%N)
echo "  storm: $(( FAILS_AFTER - FAILS_BEFORE )) failed logins (argon2 each) in $(echo "$END - $START" | bc) s"
kill "$STORM" 2>/dev/null || true
STORM=
