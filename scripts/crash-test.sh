#!/usr/bin/env bash
# Crash test against your own build: concurrent writers (SYNC and ASYNC partitions, local and
# forwarded, single and pipelined), `kill -9` at a random moment, restart on the same data
# directory, and a check that every acknowledged SET and INCR result is there.
#
#   scripts/crash-test.sh [path/to/gokv-server] [trials]     (defaults: target/release, 20)
#
# The trials are tests/crash.rs; cargo builds only the test harness around your binary.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/gokv-server}
TRIALS=${2:-20}
if [ ! -x "$BIN" ]; then
  if [ "$BIN" = target/release/gokv-server ]; then
    cargo build --release -p gokv
  else
    echo "no executable at $BIN" >&2
    exit 2
  fi
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
echo "crash-testing $BIN with $TRIALS trials"
GOKV_SERVER_BIN=$BIN GOKV_CRASH_TRIALS=$TRIALS \
  cargo test -p gokv --test crash -- --nocapture --test-threads 1
