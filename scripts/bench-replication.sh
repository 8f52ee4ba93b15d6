#!/usr/bin/env bash
# Replication's cost and speed (issue 12's "Performance", first slice):
#   1. primary SET throughput at -P 16 (50 clients, 16-byte keys, 32-byte values, one MEMORY
#      partition), without a replica, then with one replica attached, same run;
#   2. the full sync of 1M keys (16-byte keys, 32-byte values): from the replica's start to
#      its `master_link_status:up`, and the sync time the replica logs.
#
#   scripts/bench-replication.sh [--shards N] [--requests N] [--keys N]
#
# Builds the release binary, starts every server on 127.0.0.1 in a scratch directory and stops
# them on exit. Needs redis-benchmark, redis-cli and python3. Timing on a shared machine is
# noisy: run it on a quiet one to compare numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

shards=2
requests=2000000
keys=1000000
while [ $# -gt 0 ]; do
    case "$1" in
        --shards) shards=$2; shift 2 ;;
        --requests) requests=$2; shift 2 ;;
        --keys) keys=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
for tool in redis-benchmark redis-cli python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done

echo "== cargo build --release --bin gokv-server" >&2
cargo build --release --bin gokv-server >&2
bin=target/release/gokv-server
pw=bench-pw
dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

port_p=${PORT_BASE:-7481}
port_r=$((port_p + 1))
port_r2=$((port_p + 2))
cli() { local port=$1; shift; redis-cli -p "$port" --user admin --pass "$pw" --no-auth-warning "$@"; }
start() { # start <port> <name> [flags...]: starts a server, waits for PONG
    local port=$1 name=$2; shift 2
    mkdir -p "$dir/$name"
    "$bin" --port "$port" --data-dir "$dir/$name" --admin-password "$pw" --metrics-port 0 \
        --shards "$shards" "$@" >"$dir/$name.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do
        cli "$port" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.05
    done
    echo "server $name did not start:" >&2; cat "$dir/$name.log" >&2; exit 1
}
field() { cli "$1" info replication | tr -d '\r' | sed -n "s/^$2://p"; }
wait_up() { # wait_up <replica port>: until the link is up
    for _ in $(seq 6000); do
        [ "$(field "$1" master_link_status)" = up ] && return 0
        sleep 0.01
    done
    echo "replica on $1 never came up" >&2; exit 1
}
wait_converged() { # wait_converged <primary port> <replica port>
    for _ in $(seq 6000); do
        [ "$(field "$2" master_link_status)" = up ] \
            && [ "$(field "$1" master_repl_offset)" = "$(field "$2" slave_repl_offset)" ] && return 0
        sleep 0.01
    done
    echo "replica on $2 never converged" >&2; exit 1
}
value=$(printf 'v%.0s' $(seq 32))
set_rps() { # set_rps <port>: SET -P 16 requests per second
    redis-benchmark -p "$1" --user admin -a "$pw" -c 50 -P 16 -n "$requests" -r 1000000 -q \
        SET bench 'key:__rand_int__' "$value" 2>/dev/null | tr '\r' '\n' \
        | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1
}

start "$port_p" primary
cli "$port_p" create partition bench string memory >/dev/null

echo "== SET throughput, -P 16, 50 clients, $shards shards" >&2
# A first round fills the key space (its table growth would favour whichever run is second).
set_rps "$port_p" >/dev/null
without=$(set_rps "$port_p")
start "$port_r" replica --replicaof "127.0.0.1:$port_p" --primary-user admin \
    --primary-password "$pw"
wait_up "$port_r"
with=$(set_rps "$port_p")
wait_converged "$port_p" "$port_r"
kill "${pids[1]}"; wait "${pids[1]}" 2>/dev/null || true

echo "== full sync of $keys keys (16-byte keys, 32-byte values)" >&2
cli "$port_p" flush partition bench >/dev/null
python3 - "$keys" "$value" <<'EOF' | cli "$port_p" --pipe >/dev/null
import sys
n, value = int(sys.argv[1]), sys.argv[2].encode()
out = sys.stdout.buffer
batch = 1000
for start in range(0, n, batch):
    count = min(batch, n - start)
    parts = [b"MSET", b"bench"]
    for i in range(start, start + count):
        parts.append(b"key:%012d" % i)
        parts.append(value)
    out.write(b"*%d\r\n" % len(parts))
    for p in parts:
        out.write(b"$%d\r\n%s\r\n" % (len(p), p))
EOF
loaded=$(cli "$port_p" dbsize bench)
began=$(date +%s.%N)
start "$port_r2" replica2 --replicaof "127.0.0.1:$port_p" --primary-user admin \
    --primary-password "$pw"
wait_up "$port_r2"
ended=$(date +%s.%N)
logged=$(sed -n 's/.*full sync from .* done in \([0-9]*\) ms.*/\1/p' "$dir/replica2.log" | tail -1)
copied=$(cli "$port_r2" dbsize bench)
rss_p=$(ps -o rss= -p "${pids[0]}")
rss_r=$(ps -o rss= -p "${pids[2]}")

ratio=$(python3 -c "print(f'{$with / $without:.2f}')")
secs=$(python3 -c "print(f'{$ended - $began:.2f}')")
cat <<EOF

| measure | value |
|---|---|
| SET -P 16 rps, no replica ($shards shards) | $without |
| SET -P 16 rps, one replica attached | $with |
| with / without | $ratio |
| full sync of $loaded keys: replica start to link up | $secs s |
| full sync as the replica logs it (handshake to last snapshot) | ${logged:-?} ms |
| keys on the replica after it | $copied |
| RSS primary / replica | $((rss_p / 1024)) MiB / $((rss_r / 1024)) MiB |
EOF
