#!/usr/bin/env bash
# User-space instructions per request of a gokv-server binary, counted by callgrind: the same
# number on every run of the same binary and workload, whatever else the machine is doing, so
# two builds can be compared without timing noise (kernel time is not counted).
#
#   scripts/count-instructions.sh [BINARY] [TEST] [REQUESTS]
#     BINARY    default target/release/gokv-server
#     TEST      get | set | ping | incr | publish (PUBLISH to a channel nobody is subscribed
#               to) | mget10 (MGET of 10 keys) (default get); get-face, set-face: the same GET/SET
#               in Redis grammar (no partition word) as a user bound to partition bench
#               (CREATE USER app ... DEFAULT bench), to compare with get-user, set-user:
#               GET/SET bench ... as that user in GoKV grammar (app holds grants on bench
#               only, not ADMIN on * as admin does, which authorization tells apart)
#     REQUESTS  default 200000; redis-benchmark -c 50 -P 16 -r 100000
#   OPTIONS="eviction allkeys-lru"  partition options for the `bench` partition (CREATE PARTITION
#             ... <options>), e.g. to count what an eviction policy or a quota costs
#   RANGE=1000000  keys drawn from (redis-benchmark -r; default 100000)
#   FILL=300000    SETs into `bench` before counting (e.g. to reach a max-keys quota first)
#   REPLICA=primary  a replica (run natively, --shards 1) follows the primary while it is
#             counted: the primary's instructions per request with the replica attached (its feed
#             sender and ack reader threads included)
#   REPLICA=replica  the primary runs natively and the replica is counted instead: what applying
#             the stream costs per request of the primary, counted once it caught up
#   CACHE_SIM=1    also simulate the caches (a 48 KiB L1d and, as the last level, a 1 MiB L2,
#             this machine's per-core sizes) and print data misses per request of each: how
#             much a change misses the cache, which instruction counts do not show (at a quota
#             of 100k keys the data no longer fits the L2)
#
# Prints "<instructions per request> <TEST> <BINARY>" and, with TOP=N set, the N functions with
# the most instructions (inclusive). Needs valgrind, redis-cli, redis-benchmark.
set -euo pipefail
bin=${1:-target/release/gokv-server}
test=${2:-get}
n=${3:-200000}
port=${PORT:-7461}
pw=count-pw
value=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
dir=$(mktemp -d)
pid=""
trap 'cleanup' EXIT
for tool in valgrind callgrind_control callgrind_annotate redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done

sim=()
[ -n "${CACHE_SIM:-}" ] && sim=(--cache-sim=yes --D1=49152,12,64 --LL=1048576,16,64)
replica=${REPLICA:-}
case "$replica" in "" | primary | replica) ;; *) echo "REPLICA is primary or replica" >&2; exit 2 ;; esac
rport=$((port + 1))
rpid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    [ -n "$rpid" ] && kill "$rpid" 2>/dev/null || true
    rm -rf "$dir"
}
cli() { redis-cli -p "$port" --user admin --pass "$pw" --no-auth-warning "$@"; }
rcli() { redis-cli -p "$rport" --user admin --pass "$pw" --no-auth-warning "$@"; }
wait_pong() { # wait_pong <cli function>
    for _ in $(seq 120); do
        "$1" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.5
    done
}
counted=()
[ "$replica" = replica ] || counted=(valgrind --tool=callgrind "${sim[@]}" --callgrind-out-file="$dir/cg.out")
"${counted[@]}" "$bin" --port "$port" --data-dir "$dir/data" --shards 1 --admin-password "$pw" \
    >"$dir/log" 2>&1 &
pid=$!
counted_pid=$pid
user=admin
bench() { redis-benchmark -p "$port" --user "$user" -a "$pw" -c 50 -P 16 -r "${RANGE:-100000}" -q "$@" >/dev/null 2>&1; }
wait_pong cli
# shellcheck disable=SC2086 # OPTIONS is a list of words
cli create partition bench string memory ${OPTIONS:-} >/dev/null
cli create partition counters int memory >/dev/null
case "$test" in
    get) bench -n 100000 SET bench key:__rand_int__ "$value"; cmd=(GET bench key:__rand_int__) ;;
    set) cmd=(SET bench key:__rand_int__ "$value") ;;
    ping) cmd=(-t ping_mbulk) ;;
    incr) cmd=(INCR counters ctr:__rand_int__) ;;
    publish) cmd=(PUBLISH bench-channel "$value") ;;
    mget10)
        bench -n 100000 SET bench key:__rand_int__ "$value"
        cmd=(MGET bench key:__rand_int__ key:__rand_int__ key:__rand_int__ key:__rand_int__
            key:__rand_int__ key:__rand_int__ key:__rand_int__ key:__rand_int__
            key:__rand_int__ key:__rand_int__)
        ;;
    get-face | set-face | get-user | set-user)
        case "$test" in
            *-face) cli create user app "$pw" default bench >/dev/null ;;
            *) cli create user app "$pw" >/dev/null ;;
        esac
        cli grant read on bench to app >/dev/null
        cli grant write on bench to app >/dev/null
        user=app
        case "$test" in
            get-face) bench -n 100000 SET key:__rand_int__ "$value"; cmd=(GET key:__rand_int__) ;;
            set-face) cmd=(SET key:__rand_int__ "$value") ;;
            get-user)
                bench -n 100000 SET bench key:__rand_int__ "$value"
                cmd=(GET bench key:__rand_int__)
                ;;
            set-user) cmd=(SET bench key:__rand_int__ "$value") ;;
        esac
        ;;
    *) echo "unknown test $test" >&2; exit 2 ;;
esac
[ -n "${FILL:-}" ] && bench -n "$FILL" SET bench key:__rand_int__ "$value"
field() { "$1" info replication | tr -d '\r' | sed -n "s/^$2://p"; }
caught_up() { # until the replica applied everything the primary streamed
    for _ in $(seq 1200); do
        [ "$(field rcli master_link_status)" = up ] \
            && [ "$(field cli master_repl_offset)" = "$(field rcli slave_repl_offset)" ] && return 0
        sleep 0.1
    done
    echo "the replica did not catch up" >&2; exit 1
}
if [ -n "$replica" ]; then
    counted=()
    [ "$replica" = replica ] && counted=(valgrind --tool=callgrind "${sim[@]}" --callgrind-out-file="$dir/cg.out")
    "${counted[@]}" "$bin" --port "$rport" --data-dir "$dir/replica" --shards 1 \
        --admin-password "$pw" --metrics-port 0 --replicaof "127.0.0.1:$port" --primary-user admin \
        --primary-password "$pw" >"$dir/replica.log" 2>&1 &
    rpid=$!
    [ "$replica" = replica ] && counted_pid=$rpid
    wait_pong rcli
    caught_up
fi
callgrind_control -z "$counted_pid" >/dev/null
bench -n "$n" "${cmd[@]}"
[ -n "$replica" ] && caught_up
callgrind_control -d "$counted_pid" >/dev/null
kill "$pid" $rpid
wait "$pid" $rpid 2>/dev/null || true
pid=""
rpid=""
out=$(ls "$dir"/cg.out.* | head -1)
[ -n "${KEEP:-}" ] && cp "$out" "$KEEP"
total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$((total / n)) $test $bin"
if [ -n "${CACHE_SIM:-}" ]; then
    # (The totals line holds "value (percent)" pairs in the order of "Events recorded".)
    callgrind_annotate "$out" 2>/dev/null | awk -v n="$n" '
        /^Events recorded:/ {for (i = 3; i <= NF; i++) ev[i - 2] = $i}
        /PROGRAM TOTALS/ {
            for (i = 1; 2 * i - 1 < NF - 1; i++) {x = $(2 * i - 1); gsub(",", "", x); v[ev[i]] = x}
            printf "per request: D1 misses %.1f (read %.1f, write %.1f), L2 misses %.1f (read %.1f, write %.1f)\n",
                (v["D1mr"] + v["D1mw"]) / n, v["D1mr"] / n, v["D1mw"] / n,
                (v["DLmr"] + v["DLmw"]) / n, v["DLmr"] / n, v["DLmw"] / n
        }'
fi
if [ -n "${TOP:-}" ]; then
    callgrind_annotate --inclusive=yes --auto=no "$out" 2>/dev/null \
        | grep -E '^ *[0-9,]+ +\(' | head -n "$TOP"
fi
