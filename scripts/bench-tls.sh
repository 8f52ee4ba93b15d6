#!/usr/bin/env bash
# GoKV vs Redis 7 over TLS, and the cost of TLS against plain TCP for both.
#
#   scripts/bench-tls.sh [--rounds N] [--port-base P] [--requests-p16 N] [--requests-p1 N]
#                        [--handshake-seconds S]
#
# Installs redis-server/redis-tools if missing, builds the release binaries, makes test
# certificates (scripts/gen-test-certs.sh), then runs scripts/bench_tls.py: GoKV (--shards 1, 2)
# and Redis, each with a plain and a TLS port on 127.0.0.1 (ports 7700-7707 by default),
# redis-benchmark [--tls] -c 50 -P 16 and -P 1 SET/GET in interleaved rounds (medians, server
# CPU per op from /proc/<pid>/stat), and new TLS connections per second (redis-benchmark -k 0;
# a Python ssl loop without and with session resumption). Prints markdown tables. Every
# process started here is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."

for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    esac
done

source scripts/bench-lib.sh
bench_need_redis
command -v openssl >/dev/null || { echo "bench-tls.sh needs openssl (for test certificates)" >&2; exit 2; }
bench_build
bench_run_python bench_tls.py "$@"
