#!/usr/bin/env bash
# Failover by Redis Sentinel, watched live (issue 13): a primary, two replicas and three
# unmodified redis-sentinel processes on loopback; a writer counts a write as acknowledged
# only once `WAIT 1` says a replica has it; the primary is killed with SIGKILL, Sentinel
# promotes a replica, the old primary comes back as a replica of the new one. One line per
# second (each node's role, acknowledged writes), then per trial: seconds from SIGKILL to
# the first write on the new primary, and lost acknowledged writes (0, or it is a bug).
#
#   scripts/failover-demo.sh [--target gokv|redis|both] [--trials N]
#
# --target both runs the same setup with redis-server nodes, trials interleaved, for Redis's
# time beside GoKV's. Builds the release binary; needs redis-sentinel (and redis-server for
# Redis), python3 with redis-py. Everything binds 127.0.0.1 and stops on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
for tool in redis-sentinel python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool (Debian: apt-get install redis-sentinel)" >&2; exit 2; }
done
python3 -c 'import redis' 2>/dev/null || { echo "needs redis-py (pip install redis)" >&2; exit 2; }
cargo build --release --bin gokv-server >&2
exec python3 scripts/failover_demo.py --gokv target/release/gokv-server "$@"
