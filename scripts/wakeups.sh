#!/usr/bin/env bash
# Wake-ups and syscalls per 1M requests, server side (issue 17): GoKV with its default flags
# and with --shards 1, and Redis, under redis-benchmark -c 50 at -P 16 and -P 1, GET, SET
# and PING.
#
#   scripts/wakeups.sh [--quick] [--tests get16,set16,ping16,get1,set1,ping1] [--no-strace]
#                      [--no-perf] [--requests-p16 N] [--requests-p1 N] [--strace-p16 N]
#                      [--strace-p1 N] [--no-build]
#
# Context switches (voluntary, involuntary; /proc/<pid>/task/*/status) and CPU per op come
# from plain runs; `perf stat -e context-switches,cpu-migrations,task-clock -p` runs beside
# them when perf works, with the syscall tracepoints (syscalls:sys_enter_*) where the kernel
# has them: syscall counts from a run that is barely slowed. Syscall counts by kind
# (epoll_wait, read/recvfrom, write/sendto, futex, others) also come from separate, smaller
# runs under `strace -f -c -p`, which slows the server too much for anything but counting.
# Needs redis-benchmark (redis-tools) and strace: `apt-get install strace redis-tools` where
# they are missing (.ci/run does not install them: this is a benchmark, never a test), and
# optionally perf (`apt-get install linux-perf`). Binaries: GOKV_BIN (default
# target/release/gokv-server, built here unless GOKV_BIN or --no-build is given), REDIS_BIN
# (default: redis-server on PATH). Prints markdown tables and writes
# bench-results/wakeups-<time>.md; every process it starts (servers, strace, perf) is stopped
# on exit, Ctrl-C and SIGTERM included. About 3 minutes; --quick under 1.5.
set -euo pipefail

cd "$(dirname "$0")/.."

build=1
args=()
for arg in "$@"; do
    case "$arg" in
        -h|--help)
            sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
            exit 0 ;;
        --no-build) build=0 ;;
        *) args+=("$arg") ;;
    esac
done

missing=()
for tool in python3 redis-benchmark; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
strace_wanted=1
for arg in "$@"; do [ "$arg" = "--no-strace" ] && strace_wanted=0; done
if [ "$strace_wanted" = 1 ] && ! command -v strace >/dev/null; then
    missing+=(strace)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "error: missing ${missing[*]}: apt-get install strace redis-tools (Debian/Ubuntu)," \
        "or pass --no-strace for context switches only" >&2
    exit 1
fi
command -v perf >/dev/null \
    || echo "== perf not found: context switches from /proc only (apt-get install linux-perf)" >&2

if [ -n "${GOKV_BIN:-}" ]; then
    build=0
fi
if [ "$build" = 1 ] && command -v cargo >/dev/null; then
    echo "== cargo build --release -p gokv" >&2
    cargo build --release -p gokv >&2
fi
export GOKV_BIN="${GOKV_BIN:-target/release/gokv-server}"
if [ -z "${REDIS_BIN:-}" ] && command -v redis-server >/dev/null; then
    REDIS_BIN=$(command -v redis-server)
fi
export REDIS_BIN="${REDIS_BIN:-}"

source scripts/bench-lib.sh
bench_run_python_env wakeups.py ${args[@]+"${args[@]}"}
