#!/usr/bin/env bash
# Replication lag at a fixed write rate (issue 12's "Performance": p99 < 5 ms from the
# primary's ack to the replica applying, at 100k writes/s): timestamps in values, see
# scripts/bench_repl_lag.py. A primary and one replica (one MEMORY partition), a short run.
#
#   scripts/bench-repl-lag.sh [--shards N] [--rate N] [--seconds S] [--bin PATH]
#
# Builds the release binary unless --bin names one, starts both servers on 127.0.0.1 in a
# scratch directory and stops them on exit. Needs redis-cli and python3. On a shared or
# small machine the writer, the poller and both servers compete for the cores: run it on a
# quiet one to compare numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

shards=2
rate=100000
seconds=5
bin=
while [ $# -gt 0 ]; do
    case "$1" in
        --shards) shards=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
for tool in redis-cli python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done
if [ -z "$bin" ]; then
    echo "== cargo build --release --bin gokv-server" >&2
    cargo build --release --bin gokv-server >&2
    bin=target/release/gokv-server
fi
pw=bench-pw
dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

port_p=${PORT_BASE:-7491}
port_r=$((port_p + 1))
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

start "$port_p" primary
cli "$port_p" create partition lag STRING MEMORY >/dev/null
start "$port_r" replica --replicaof "127.0.0.1:$port_p" --primary-user admin \
    --primary-password "$pw"
for _ in $(seq 3000); do
    [ "$(field "$port_r" master_link_status)" = up ] && break
    sleep 0.01
done
[ "$(field "$port_r" master_link_status)" = up ] || { echo "the replica never came up" >&2; exit 1; }
echo "== $rate writes/s for $seconds s, $shards shards each" >&2
python3 scripts/bench_repl_lag.py --primary "$port_p" --replica "$port_r" --password "$pw" \
    --rate "$rate" --seconds "$seconds"
echo "primary: $(cli "$port_p" info replication | tr -d '\r' | grep '^slave0:')"
