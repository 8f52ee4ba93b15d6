#!/usr/bin/env bash
# GoKV vs Redis 7, side by side, as ../shared/BENCHMARKS.md asks. See scripts/README.md.
#
#   scripts/bench-vs-redis.sh [--rounds N] [--quick] [--mem-keys N] [--no-memory] [--no-chart]
#                             [--port-base P]
#
# Installs redis-server/redis-tools if missing, builds the release binaries, then runs
# scripts/bench_vs_redis.py, which starts GoKV (--shards 1 and 2) and Redis on 127.0.0.1
# (ports 7600-7699 by default), runs the scenarios in interleaved rounds, prints one markdown
# table and writes it, with a PNG chart, to bench-results/<timestamp>.md/.png.
# Every process started here is stopped on exit, Ctrl-C included.
set -euo pipefail

cd "$(dirname "$0")/.."

for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    esac
done

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null \
    || ! command -v redis-cli >/dev/null; then
    echo "== installing redis-server and redis-tools" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >&2
fi
redis_major=$(redis-server --version | sed -n 's/.*v=\([0-9]*\)\..*/\1/p')
if [ "${redis_major:-0}" -lt 7 ]; then
    echo "warning: $(redis-server --version): BENCHMARKS.md compares with Redis 7" >&2
fi

if ! python3 -c 'import matplotlib' 2>/dev/null; then
    echo "== installing matplotlib for the chart" >&2
    python3 -m pip install -q matplotlib >&2 2>/dev/null \
        || python3 -m pip install -q --user matplotlib >&2 2>/dev/null \
        || echo "warning: cannot install matplotlib; the chart will be skipped" >&2
fi

echo "== cargo build --release -p gokv -p gokv-loadtest" >&2
cargo build --release -p gokv -p gokv-loadtest >&2

state=$(mktemp -d "${TMPDIR:-/tmp}/gokv-bench.XXXXXX")
py_pid=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$py_pid" ] && kill -0 "$py_pid" 2>/dev/null; then
        kill -TERM "$py_pid" 2>/dev/null || true
        wait "$py_pid" 2>/dev/null || true
    fi
    # The helper stops its servers itself; this catches any it could not (killed with -9).
    if [ -f "$state/pids" ]; then
        while read -r pid; do
            [ -n "$pid" ] || continue
            if [ -r "/proc/$pid/cmdline" ] \
                && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -e gokv-server -e redis-server; then
                echo "stopping leftover server pid $pid" >&2
                kill -TERM "$pid" 2>/dev/null || true
                sleep 1
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done <"$state/pids"
    fi
    rm -rf "$state"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 scripts/bench_vs_redis.py --state-dir "$state" \
    --gokv-bin target/release/gokv-server --loadtest-bin target/release/gokv-loadtest "$@" &
py_pid=$!
set +e
wait "$py_pid"
rc=$?
set -e
py_pid=""
exit "$rc"
