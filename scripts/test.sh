#!/usr/bin/env bash
# The test command of the README: unit tests, integration tests against the real binary,
# property tests. Keep it runnable on a fresh machine with only cargo installed.
set -euo pipefail
cd "$(dirname "$0")/.."
# fault-injection adds `DEBUG FAIL-WRITE/FAIL-FSYNC` so that the -IOERR tests (tests/persistence.rs)
# run; one build with it serves every test, so the suite compiles once.
cargo test --workspace --features gokv/fault-injection "$@"
