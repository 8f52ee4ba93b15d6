#!/usr/bin/env bash
# Time of GET /metrics on a release gokv-server holding N partitions (the issue's budget: under
# 20 ms with 1,000), best and median of 20 scrapes, measured by curl.
#
#   scripts/metrics-latency.sh [BINARY] [PARTITIONS]
#     BINARY      default target/release/gokv-server
#     PARTITIONS  default 1000
# Needs redis-cli and curl.
set -euo pipefail
bin=${1:-target/release/gokv-server}
n=${2:-1000}
port=${PORT:-7471}
mport=${METRICS_PORT:-9471}
pw=metrics-pw
dir=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
for tool in redis-cli curl; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done
"$bin" --port "$port" --metrics-port "$mport" --data-dir "$dir/data" --admin-password "$pw" \
    >"$dir/log" 2>&1 &
pid=$!
cli() { redis-cli -p "$port" --user admin --pass "$pw" --no-auth-warning "$@"; }
for _ in $(seq 100); do
    cli ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
done
for i in $(seq 0 $((n - 1))); do echo "CREATE PARTITION m$i STRING MEMORY"; done | cli >/dev/null
for i in $(seq 0 $((n - 1))); do echo "SET m$i k v"; done | cli >/dev/null
url="http://127.0.0.1:$mport/metrics"
bytes=$(curl -s "$url" | wc -c)
times=$(for _ in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' "$url"; done | sort -n)
best=$(echo "$times" | head -1)
median=$(echo "$times" | sed -n 10p)
echo "partitions=$n bytes=$bytes best_ms=$(echo "$best * 1000" | bc) median_ms=$(echo "$median * 1000" | bc)"
