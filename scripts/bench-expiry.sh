#!/usr/bin/env bash
# Key deadlines and active expiry, GoKV vs Redis 7 (issue 10's "Performance"; the method is
# bench-vs-redis.sh's). See scripts/README.md.
#
#   scripts/bench-expiry.sh [--quick] [--rounds N] [--storm-rounds N] [--mem-rounds N]
#                           [--scenarios 1,2,3,4] [--json FILE] [--port-base P] [...]
#
# Installs redis-server/redis-tools if missing, builds the release binaries, then runs
# scripts/bench_expiry.py (--help lists every flag): SET ... EX at -P 16, GET on keys with
# and without deadlines, memory of 1M keys with and without deadlines, and an expiry storm
# of 1M keys under a steady GET load; GoKV --shards 1 and 2 beside Redis, interleaved rounds.
# Prints one table and writes it to bench-results/expiry-<timestamp>.md (and --json FILE).
# Every process started here is stopped on exit, Ctrl-C included.
set -euo pipefail

cd "$(dirname "$0")/.."

for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; echo
                   python3 scripts/bench_expiry.py --help; exit 0 ;;
    esac
done

source scripts/bench-lib.sh
bench_need_redis
bench_build
bench_run_python bench_expiry.py "$@"
