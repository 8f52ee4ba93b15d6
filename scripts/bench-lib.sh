# Shared by the benchmark entry scripts (bench-vs-redis.sh, bench-expiry.sh,
# bench-scaling.sh, wakeups.sh, ...): source it from
# the repository root. Not a script of its own.
#
#   bench_need_redis          install redis-server/redis-tools when missing; warn below 7
#   bench_build               cargo build --release -p gokv -p gokv-loadtest
#   bench_run_python PY ARGS  run scripts/PY with a scratch --state-dir and the release
#                             binaries; on exit, Ctrl-C, SIGTERM or SIGHUP stop it and any
#                             server it left behind (pids in the state dir), remove the state
#                             dir, and exit with its status
#   bench_run_python_env PY ARGS  the same, the binaries left to the helper (its defaults and
#                             the environment: GOKV_BIN, REDIS_BIN, ...)
#   bench_cleanup             that clean-up (the trap the two above set)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

bench_need_redis() {
    if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null \
        || ! command -v redis-cli >/dev/null; then
        echo "== installing redis-server and redis-tools" >&2
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server \
            redis-tools >&2
    fi
    local redis_major
    redis_major=$(redis-server --version | sed -n 's/.*v=\([0-9]*\)\..*/\1/p')
    if [ "${redis_major:-0}" -lt 7 ]; then
        echo "warning: $(redis-server --version): the benchmarks compare with Redis 7" >&2
    fi
}

bench_build() {
    echo "== cargo build --release -p gokv -p gokv-loadtest" >&2
    cargo build --release -p gokv -p gokv-loadtest >&2
}

bench_state=""
bench_py_pid=""

bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$bench_py_pid" ] && kill -0 "$bench_py_pid" 2>/dev/null; then
        kill -TERM "$bench_py_pid" 2>/dev/null || true
        wait "$bench_py_pid" 2>/dev/null || true
    fi
    # The helper stops its servers itself; this catches any it could not (killed with -9).
    if [ -n "$bench_state" ] && [ -f "$bench_state/pids" ]; then
        while read -r pid; do
            [ -n "$pid" ] || continue
            if [ -r "/proc/$pid/cmdline" ] \
                && tr '\0' ' ' <"/proc/$pid/cmdline" \
                | grep -q -e gokv-server -e redis-server -e valkey-server -e gokv-loadtest \
                    -e '^strace ' -e '^perf stat '; then
                echo "stopping leftover process pid $pid" >&2
                kill -TERM "$pid" 2>/dev/null || true
                sleep 1
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done <"$bench_state/pids"
    fi
    [ -z "$bench_state" ] || rm -rf "$bench_state"
    exit "$rc"
}

bench_run_python() {
    local py=$1
    shift
    bench_run_python_env "$py" \
        --gokv-bin target/release/gokv-server --loadtest-bin target/release/gokv-loadtest "$@"
}

bench_run_python_env() {
    local py=$1
    shift
    bench_state=$(mktemp -d "${TMPDIR:-/tmp}/gokv-${py%.py}.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM HUP
    python3 "scripts/$py" --state-dir "$bench_state" "$@" &
    bench_py_pid=$!
    local rc
    set +e
    wait "$bench_py_pid"
    rc=$?
    set -e
    bench_py_pid=""
    exit "$rc"
}
