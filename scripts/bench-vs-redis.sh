#!/usr/bin/env bash
# GoKV vs Redis 7, side by side, with the method of scripts/README.md.
#
#   scripts/bench-vs-redis.sh [--rounds N] [--quick] [--mem-keys N] [--no-memory] [--no-chart]
#                             [--port-base P] [--scenarios 1,2,7,8,9]
#
# Installs redis-server/redis-tools if missing, builds the release binaries, then runs
# scripts/bench_vs_redis.py, which starts GoKV (--shards 1 and 2) and Redis on 127.0.0.1
# (ports 7600-7699 by default), runs the scenarios in interleaved rounds, prints one markdown
# table and writes it, with a PNG chart, to bench-results/<timestamp>.md/.png. Scenario 7 is
# the Redis face: plain SET/GET as a user bound to a partition, -P 1 and -P 16, beside the
# partition-first form (1, 2) and Redis; scenario 8 is the same face driven by gokv-loadtest
# --target redis (SET/GET 1:1); scenario 9 is every other command of issue 17's list (PING -P 1,
# INCR, MSET and MGET of 10 keys) and of the families since (EXPIRE, PUBLISH). Every process
# started here is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."

for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    esac
done

source scripts/bench-lib.sh
bench_need_redis

if ! python3 -c 'import matplotlib' 2>/dev/null; then
    echo "== installing matplotlib for the chart" >&2
    python3 -m pip install -q matplotlib >&2 2>/dev/null \
        || python3 -m pip install -q --user matplotlib >&2 2>/dev/null \
        || echo "warning: cannot install matplotlib; the chart will be skipped" >&2
fi

bench_build
bench_run_python bench_vs_redis.py "$@"
