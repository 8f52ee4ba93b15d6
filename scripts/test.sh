#!/usr/bin/env bash
# The test command of the README: unit tests, integration tests against the real binary,
# property tests. Keep it runnable on a fresh machine with only cargo installed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace "$@"
