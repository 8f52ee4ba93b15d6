#!/usr/bin/env bash
# Durable writes, side by side in one run: GoKV SYNC vs Redis 7 `appendfsync always`, GoKV
# ASYNC vs `appendfsync everysec` (redis-benchmark -c 50 -n N -r 100000, 32-byte values),
# then the time GoKV takes to restart with 1M keys of 32-byte values.
#
#   scripts/bench-persistence.sh [ROUNDS] [N] [RESTART_KEYS]     (defaults: 2 200000 1000000)
#
# Uses target/release/gokv-server (built if missing), redis-server and redis-benchmark from
# PATH, ports 6391 and 7391 on 127.0.0.1, and data in a temporary directory it removes.
# Stops every process it started on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
N=${2:-200000}
KEYS=${3:-1000000}
VALUE=$(printf 'v%.0s' $(seq 32))
BIN=${GOKV_SERVER_BIN:-target/release/gokv-server}
[ -x "$BIN" ] || cargo build --release -p gokv
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null || {
  echo "needs redis-server and redis-benchmark (apt-get install redis-server redis-tools)" >&2
  exit 1
}
WORK=$(mktemp -d /tmp/gokv-bench-persist.XXXXXX)
# GoKV is default deny: start it with a throwaway admin password and log every tool in.
PW=bench-$RANDOM$RANDOM
G="redis-cli --no-auth-warning --user admin --pass $PW -p 7391"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 200); do
    redis-cli -p "$1" PING >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "port $1 did not come up" >&2
  exit 1
}

start_gokv() { # data-dir
  "$BIN" --port 7391 --data-dir "$1" --admin-password "$PW" 2>>"$WORK/gokv.log" &
  PIDS+=($!)
  wait_port 7391
}

stop_gokv() {
  $G SHUTDOWN >/dev/null 2>&1 || true
  wait "${PIDS[-1]}" 2>/dev/null || true
  unset 'PIDS[-1]'
}

start_redis() { # appendfsync
  rm -rf "$WORK/redis" && mkdir -p "$WORK/redis"
  redis-server --port 6391 --save '' --appendonly yes --appendfsync "$1" --dir "$WORK/redis" \
    --daemonize no >"$WORK/redis.log" 2>&1 &
  PIDS+=($!)
  wait_port 6391
}

stop_redis() {
  redis-cli -p 6391 SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  wait "${PIDS[-1]}" 2>/dev/null || true
  unset 'PIDS[-1]'
}

rps() { # port args...
  local port=$1; shift
  redis-benchmark -p "$port" -c 50 -n "$N" -r 100000 -q "$@" 2>/dev/null |
    tr '\r' '\n' | grep -E 'requests per second' | tail -1 | sed -E 's/.*: ([0-9.]+) requests.*/\1/'
}

echo "# durable SET throughput: redis-benchmark -c 50 -n $N -r 100000, 32-byte values"
printf '%-6s %-28s %-28s %-28s %-28s\n' round "GoKV SYNC" "Redis always" "GoKV ASYNC" "Redis everysec"
for round in $(seq "$ROUNDS"); do
  rm -rf "$WORK/gokv" && start_gokv "$WORK/gokv"
  $G CREATE PARTITION s STRING SYNC >/dev/null
  $G CREATE PARTITION a STRING ASYNC >/dev/null
  gs=$(rps 7391 --user admin -a "$PW" SET s key:__rand_int__ "$VALUE")
  start_redis always
  ra=$(rps 6391 SET key:__rand_int__ "$VALUE")
  stop_redis
  ga=$(rps 7391 --user admin -a "$PW" SET a key:__rand_int__ "$VALUE")
  fsyncs=$($G INFO persistence | tr -d '\r' | sed -n 's/^fsyncs://p')
  stop_gokv
  start_redis everysec
  re=$(rps 6391 SET key:__rand_int__ "$VALUE")
  stop_redis
  printf '%-6s %-28s %-28s %-28s %-28s\n' "$round" "$gs" "$ra" "$ga" "$re"
  echo "       (GoKV fsyncs in the round: $fsyncs)"
done

echo
echo "# restart with $KEYS keys of 32-byte values (one SYNC partition, written by MSET)"
rm -rf "$WORK/gokv" && start_gokv "$WORK/gokv"
$G CREATE PARTITION big STRING SYNC >/dev/null
python3 - "$KEYS" "$VALUE" <<'PY' | $G --pipe >/dev/null
import sys
keys, value = int(sys.argv[1]), sys.argv[2].encode()
out = sys.stdout.buffer
batch = 1000
for start in range(0, keys, batch):
    n = min(batch, keys - start)
    parts = [b"MSET", b"big"]
    for i in range(start, start + n):
        parts += [b"key:%09d" % i, value]
    out.write(b"*%d\r\n" % len(parts))
    for p in parts:
        out.write(b"$%d\r\n%s\r\n" % (len(p), p))
PY
$G STATS PARTITION big | paste - - | grep keys
du -sh "$WORK/gokv"
kill -9 "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'
for i in 1 2 3; do
  t0=$(date +%s.%N)
  start_gokv "$WORK/gokv"
  t1=$(date +%s.%N)
  keys=$($G STATS PARTITION big | paste - - | awk '$1=="keys"{print $2}')
  rec=$($G INFO persistence | tr -d '\r' | grep -o 'recovery_ms=[0-9]*' | sort -t= -k2 -n | tail -1)
  echo "restart $i: $(echo "$t1 - $t0" | bc) s from exec to PING answered; $keys keys; slowest shard $rec"
  kill -9 "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'
done
