#!/usr/bin/env bash
# Scaling across cores (issue 17): GoKV --shards 1 2 4 8 12 beside Redis 7 (and Valkey)
# io-threads 1 4 8, SET and GET at -P 1 and -P 16, throughput and server CPU per op.
#
#   scripts/bench-scaling.sh [--quick] [--shards 1,2,4,8,12] [--io-threads 1,4,8] [--rounds N]
#                            [--duration S] [--connections N] [--keys N] [--min-load-cores N]
#                            [--spread] [--no-redis] [--no-chart] [--no-build] [--out-dir D]
#
# Binaries come from the environment (or --gokv-bin/--loadtest-bin/--redis-bin/--valkey-bin):
#   GOKV_BIN      gokv-server     (default target/release/gokv-server, built here with cargo
#   LOADTEST_BIN  gokv-loadtest    unless --no-build or both of these are given)
#   REDIS_BIN     redis-server    (default: the one on PATH)
#   VALKEY_BIN    valkey-server   (optional: without it Valkey is skipped, and the report says
#                                  how to add it)
# Nothing is downloaded or installed: carry the binaries to a machine without network.
#
# A server is pinned (taskset) to the first N CPUs, gokv-loadtest to the rest; a count that
# leaves no CPU for the client is skipped and named. Everything binds 127.0.0.1. Prints one
# markdown table and writes bench-results/scaling-<time>.md, .csv and .png (matplotlib, when
# installed). Every process it starts is stopped on exit, Ctrl-C and SIGTERM included.
# Full run: 3 rounds of 2 s runs, about 5-6 minutes on 16 CPUs with Valkey; --quick: one
# round of 0.5 s runs.
set -euo pipefail

cd "$(dirname "$0")/.."

build=1
for arg in "$@"; do
    case "$arg" in
        -h|--help)
            sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
            echo
            python3 scripts/bench_scaling.py --help | sed -n '/^options:/,$p'
            exit 0 ;;
        --no-build) build=0 ;;
    esac
done
args=()
for arg in "$@"; do
    [ "$arg" = "--no-build" ] || args+=("$arg")
done

for tool in python3 taskset; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool is missing (taskset is in util-linux)" >&2
        exit 1
    fi
done

if [ -n "${GOKV_BIN:-}" ] && [ -n "${LOADTEST_BIN:-}" ]; then
    build=0
fi
if [ "$build" = 1 ]; then
    if command -v cargo >/dev/null; then
        echo "== cargo build --release -p gokv -p gokv-loadtest" >&2
        cargo build --release -p gokv -p gokv-loadtest >&2
    else
        echo "== no cargo: using the binaries as they are (GOKV_BIN, LOADTEST_BIN, target/release)" >&2
    fi
fi
export GOKV_BIN="${GOKV_BIN:-target/release/gokv-server}"
export LOADTEST_BIN="${LOADTEST_BIN:-target/release/gokv-loadtest}"
if [ -z "${REDIS_BIN:-}" ] && command -v redis-server >/dev/null; then
    REDIS_BIN=$(command -v redis-server)
fi
export REDIS_BIN="${REDIS_BIN:-}"
export VALKEY_BIN="${VALKEY_BIN:-}"
if [ -z "$VALKEY_BIN" ]; then
    echo "== Valkey: skipped (VALKEY_BIN not set; see the report for how to add it)" >&2
fi

source scripts/bench-lib.sh
bench_run_python_env bench_scaling.py ${args[@]+"${args[@]}"}
