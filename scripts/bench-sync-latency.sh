#!/usr/bin/env bash
# The primary's GET latency during a full sync (issue 12's "Performance": the primary's P1
# GET p99 during a full sync of 1M keys <= 2x its p99 before): a primary loaded with 1M keys
# (16-byte keys, 32-byte values), one client sending GETs one at a time for a few seconds,
# then a replica attached and the same GETs until its `master_link_status:up`; p50/p99/max
# before and during, the sync's time, and the CPU both processes spent (scripts/
# bench_sync_latency.py). Interleaved rounds on fresh processes, medians.
#
#   scripts/bench-sync-latency.sh [--redis] [--rounds N] [--keys N] [--before S] [--shards N]
#                                 [--bin NAME=PATH ...] [--no-build] [--port-base P]
#                                 [--replica-nice N]
#
# --redis runs the same against redis-server 7 (primary + replica, persistence off, diskless
# sync without its delay) in the same rounds, for reference; --bin (repeatable) compares
# gokv-server builds. Builds the release binary unless --no-build; every process it starts
# is stopped on exit. On a shared machine the client, both servers and anything else compete
# for the cores: compare builds in one run (interleaved), not across runs.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
args=()
for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --no-build) build=0 ;;
        --redis) args+=("$arg"); redis=1 ;;
        *) args+=("$arg") ;;
    esac
done

source scripts/bench-lib.sh
if [ "${redis:-0}" = 1 ]; then bench_need_redis; fi
if [ "$build" = 1 ]; then
    echo "== cargo build --release --bin gokv-server" >&2
    cargo build --release --bin gokv-server >&2
fi
bench_run_python bench_sync_latency.py "${args[@]}"
