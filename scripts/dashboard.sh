#!/usr/bin/env bash
# A demonstration of the dashboard's panels without Grafana: starts a release gokv-server with
# its metrics on a free port, drives a mixed load at it with gokv-loadtest, and runs
# scripts/dashboard.py against it, which draws the panels as PNGs. For your own server run
# scripts/dashboard.py --url http://HOST:9379/metrics directly.
#
#   scripts/dashboard.sh [--no-build] [--prometheus] [--duration S] [dashboard.py options]
#
# --prometheus also runs a real Prometheus (`prometheus` on PATH; Debian: apt-get install
# prometheus) scraping the server every second, and at the end runs every query of
# ops/grafana/gokv.json through it (scripts/dashboard_queries.py): what Grafana would draw.
#
# The load, for --duration seconds (default 30), on five partitions made to light up every
# panel: `web` (MEMORY, GET/SET 1:1), `cache` (MEMORY, max-keys 20000 with allkeys-lru and a
# 3 s default-ttl: evictions and expirations), `orders` (SYNC, 500 SET/s: fsyncs), `limited`
# (max-ops 2000, offered 4000/s: -THROTTLED) and `small` (max-keys 1000, noeviction: -OOM).
# Every process it starts is stopped on exit, Ctrl-C and SIGTERM included.
set -euo pipefail
cd "$(dirname "$0")/.."
build=1
duration=30
prometheus=0
pass=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=0 ;;
        --prometheus) prometheus=1 ;;
        --duration) duration=$2; shift ;;
        *) pass+=("$1") ;;
    esac
    shift
done
if [ "$build" = 1 ]; then
    echo "== cargo build --release -p gokv -p gokv-loadtest" >&2
    cargo build --release -p gokv -p gokv-loadtest >&2
fi
server=target/release/gokv-server
loadtest=target/release/gokv-loadtest
command -v redis-cli >/dev/null || { echo "redis-cli is needed (apt-get install redis-tools)" >&2; exit 1; }
if [ "$prometheus" = 1 ] && ! command -v prometheus >/dev/null; then
    echo "--prometheus needs prometheus on PATH (Debian: apt-get install prometheus)" >&2
    exit 1
fi

state=$(mktemp -d "${TMPDIR:-/tmp}/gokv-dashboard.XXXXXX")
pids=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$state"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
metrics=$(free_port)
password=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
"$server" --port "$port" --metrics-port "$metrics" --shards 2 --data-dir "$state/data" \
    --admin-password "$password" 2>"$state/server.log" &
pids+=($!)
cli() { redis-cli -p "$port" --user admin --pass "$password" --no-auth-warning "$@"; }
for _ in $(seq 100); do cli PING >/dev/null 2>&1 && break; sleep 0.1; done
cli PING >/dev/null || { echo "the server did not start:" >&2; cat "$state/server.log" >&2; exit 1; }
cli CREATE PARTITION web STRING MEMORY >/dev/null
cli CREATE PARTITION cache STRING MEMORY max-keys 20000 eviction allkeys-lru default-ttl 3000 >/dev/null
cli CREATE PARTITION orders STRING SYNC >/dev/null
cli CREATE PARTITION limited STRING MEMORY max-ops 2000 >/dev/null
cli CREATE PARTITION small STRING MEMORY max-keys 1000 >/dev/null
echo "== gokv-server on 127.0.0.1:$port, metrics on :$metrics; $duration s of load" >&2

load() {
    "$loadtest" --port "$port" --user admin --password "$password" -q \
        --duration "$((duration + 15))" "$@" >/dev/null 2>>"$state/load.log" &
    pids+=($!)
}
load --partitions web -c 8 -P 4 --ratio 1:1
load --partitions cache -c 4 -P 4 --ratio 1:1 --rate 20000
load --partitions orders -c 4 --ratio 0:1 --rate 500
load --partitions limited -c 2 --ratio 1:1 --rate 4000
load --partitions small -c 2 --ratio 0:1 --rate 1000
if [ "$prometheus" = 1 ]; then
    prom_port=$(free_port)
    printf 'global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gokv\n    static_configs:\n      - targets: ["127.0.0.1:%s"]\n' \
        "$metrics" >"$state/prometheus.yml"
    prometheus --config.file="$state/prometheus.yml" --storage.tsdb.path="$state/tsdb" \
        --web.listen-address="127.0.0.1:$prom_port" >"$state/prometheus.log" 2>&1 &
    pids+=($!)
    echo "== prometheus on 127.0.0.1:$prom_port scraping it every second" >&2
fi
python3 scripts/dashboard.py --url "http://127.0.0.1:$metrics/metrics" --duration "$duration" \
    "${pass[@]}"
if [ "$prometheus" = 1 ]; then
    echo "== every query of ops/grafana/gokv.json, through Prometheus" >&2
    python3 scripts/dashboard_queries.py --prometheus "http://127.0.0.1:$prom_port"
fi
