#!/usr/bin/env bash
# Hit ratio of eviction policies on a zipf(0.99) trace: exact LRU and random (simulated),
# Redis 7 (allkeys-lru, allkeys-lfu, allkeys-random), GoKV over the wire and GoKV's store
# alone. See scripts/hit_ratio.py for the method; arguments are passed on to it
# (--requests, --keys, --cache, --seed, --trace-out).
#
#   scripts/hit-ratio.sh [--no-build] [hit_ratio.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
build=1
if [ "${1:-}" = "--no-build" ]; then
    build=0
    shift
fi
if [ "$build" = 1 ]; then
    cargo build --release --bin gokv-server --example hit_ratio >&2
fi
redis=()
if command -v redis-server >/dev/null; then
    redis=(--redis "$(command -v redis-server)")
else
    echo "redis-server not found: the Redis rows are left out" >&2
fi
exec python3 scripts/hit_ratio.py "${redis[@]}" --gokv target/release/gokv-server \
    --store target/release/examples/hit_ratio "$@"
