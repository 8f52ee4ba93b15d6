#!/usr/bin/env bash
# Writing at the quota with eviction against writing below it (issue 11: ">= 0.8x").
#
#   scripts/bench-eviction.sh [BINARY] [REQUESTS] [ROUNDS]
#     BINARY    default target/release/gokv-server (built when it is the default)
#     REQUESTS  per run, default 1000000 (redis-benchmark -c 50 -P 16, 32-byte values)
#     ROUNDS    default 3, interleaved; the medians are compared
#
# One server (--shards 1), three STRING MEMORY partitions with eviction allkeys-lru:
#   below   max-keys 100000000 (never reached), emptied (FLUSH PARTITION) before each run:
#           a run inserts ~630k new keys (its table grows) and overwrites the rest;
#   q10k    max-keys 10000, filled first: every SET of a new key evicts one first;
#   q100k   max-keys 100000, filled first: the same with a cache ten times larger.
# Keys are drawn from 10^6 (-r 1000000), so at a quota nearly every SET writes a key the
# partition does not hold and evicts one. Prints requests/s per run, the medians and at/below,
# and beside them the server's CPU time per request (user + system, from /proc): on a busy
# machine throughput swings with what else runs, CPU per request far less.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/gokv-server}
n=${2:-1000000}
rounds=${3:-3}
if [ "$bin" = target/release/gokv-server ]; then
    cargo build --release --bin gokv-server >&2
fi
port=${PORT:-7471}
pw=evict-pw
value=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
dir=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
"$bin" --port "$port" --data-dir "$dir/data" --shards 1 --admin-password "$pw" >"$dir/log" 2>&1 &
pid=$!
cli() { redis-cli -p "$port" --user admin --pass "$pw" --no-auth-warning "$@"; }
for _ in $(seq 100); do
    cli ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
done
cli create partition below string memory max-keys 100000000 eviction allkeys-lru >/dev/null
cli create partition q10k string memory max-keys 10000 eviction allkeys-lru >/dev/null
cli create partition q100k string memory max-keys 100000 eviction allkeys-lru >/dev/null
rps() {
    redis-benchmark -p "$port" --user admin -a "$pw" -c 50 -P 16 -r 1000000 -n "$1" -q \
        SET "$2" key:__rand_int__ "$value" 2>/dev/null \
        | tr '\r' '\n' \
        | awk '/requests per second/ {for (i = 2; i <= NF; i++) if ($i == "requests") print $(i - 1)}' \
        | tail -1
}
# Fill the quotas first (their first runs would otherwise partly run below them).
rps 300000 q10k >/dev/null
rps 1000000 q100k >/dev/null
# The server's CPU time so far, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))
declare -A runs cpu
for r in $(seq "$rounds"); do
    line="round $r:"
    for p in below q10k q100k; do
        [ "$p" = below ] && cli flush partition below >/dev/null
        before=$(ticks)
        got=$(rps "$n" "$p")
        us=$(echo "$(($(ticks) - before)) $tick_us $n" | awk '{printf "%.3f", $1 * $2 / $3}')
        runs[$p]+="$got "
        cpu[$p]+="$us "
        line+=" $p $got ($us us)"
    done
    echo "$line" >&2
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
below=$(echo "${runs[below]}" | median)
below_cpu=$(echo "${cpu[below]}" | median)
for p in below q10k q100k; do
    m=$(echo "${runs[$p]}" | median)
    c=$(echo "${cpu[$p]}" | median)
    printf '%-6s runs: %s median %s req/s  at/below %.2f;  CPU us/request: %s median %s  below/at %.2f\n' \
        "$p" "${runs[$p]}" "$m" "$(echo "$m $below" | awk '{print $1 / $2}')" \
        "${cpu[$p]}" "$c" "$(echo "$below_cpu $c" | awk '{print $1 / $2}')"
done
printf 'keys held: q10k %s, q100k %s; evicted: q10k %s, q100k %s\n' \
    "$(cli dbsize q10k 2>/dev/null || echo ?)" "$(cli dbsize q100k 2>/dev/null || echo ?)" \
    "$(cli stats partition q10k 2>/dev/null | grep -A1 '^evicted_keys$' | tail -1)" \
    "$(cli stats partition q100k 2>/dev/null | grep -A1 '^evicted_keys$' | tail -1)"
