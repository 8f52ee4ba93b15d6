#!/usr/bin/env bash
# PUBLISH to many subscribers, GoKV (--shards 2) vs Redis 7, in interleaved rounds.
#
#   scripts/bench-pubsub.sh [--rounds N] [--requests N] [--subscribers N] [--publishers C]
#                           [--pipeline P] [--payload BYTES] [--port-base P]
#
# Installs redis-server/redis-tools if missing, builds the release binary, then runs
# scripts/bench_pubsub.py: 100 subscribers (GoKV deals them over both shards) on one
# channel, redis-benchmark publishing to it (-c 10 -P 16 by default), the PUBLISH rate of
# each server, the messages delivered per second (rate x subscribers) and the share of the
# messages that arrived. Every process started here is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."

for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    esac
done

source scripts/bench-lib.sh
bench_need_redis
echo "== cargo build --release -p gokv" >&2
cargo build --release -p gokv >&2
bench_run_python bench_pubsub.py "$@"
