#!/usr/bin/env bash
# Replication's cost and speed (issue 12's "Performance", first slice):
#   1. primary SET throughput at -P 16 (50 clients, 16-byte keys, 32-byte values, one MEMORY
#      partition), without a replica, then with one replica attached, same run;
#   2. the full sync of 1M keys (16-byte keys, 32-byte values): from the replica's start to
#      its `master_link_status:up`, and the sync time the replica logs.
# Beside each SET rate: the server CPU per request (utime+stime from /proc, primary and
# replica), so that what the replica costs the primary is told apart from what the replica
# takes of a shared machine's cores. --redis measures 1 the same way for redis-server 7
# (primary + replica, persistence off) on the same machine: its ratio is the reference for
# what the machine allows. --rounds N repeats 1 on fresh processes and reports medians.
#
#   scripts/bench-replication.sh [--shards N] [--requests N] [--keys N] [--redis] [--rounds N]
#                                [--bin PATH] [--no-sync]
#
# Builds the release binary, starts every server on 127.0.0.1 in a scratch directory and stops
# them on exit. Needs redis-benchmark, redis-cli and python3. Timing on a shared machine is
# noisy: run it on a quiet one to compare numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

shards=2
requests=2000000
keys=1000000
redis=0
rounds=1
bin=
sync=1
while [ $# -gt 0 ]; do
    case "$1" in
        --shards) shards=$2; shift 2 ;;
        --requests) requests=$2; shift 2 ;;
        --keys) keys=$2; shift 2 ;;
        --redis) redis=1; shift ;;
        --rounds) rounds=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        --no-sync) sync=0; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
for tool in redis-benchmark redis-cli python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done

if [ -z "$bin" ]; then
    echo "== cargo build --release --bin gokv-server" >&2
    cargo build --release --bin gokv-server >&2
    bin=target/release/gokv-server
fi
pw=bench-pw
dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

port_p=${PORT_BASE:-7481}
port_r=$((port_p + 1))
port_r2=$((port_p + 2))
target=gokv
cli() {
    local port=$1; shift
    if [ "$target" = redis ]; then redis-cli -p "$port" "$@"
    else redis-cli -p "$port" --user admin --pass "$pw" --no-auth-warning "$@"; fi
}
start() { # start <port> <name> [flags...]: starts a server, waits for PONG
    local port=$1 name=$2; shift 2
    mkdir -p "$dir/$name"
    if [ "$target" = redis ]; then
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir/$name" \
            --repl-diskless-sync-delay 0 "$@" >"$dir/$name.log" 2>&1 &
    else
        "$bin" --port "$port" --data-dir "$dir/$name" --admin-password "$pw" --metrics-port 0 \
            --shards "$shards" "$@" >"$dir/$name.log" 2>&1 &
    fi
    pids+=($!)
    for _ in $(seq 200); do
        cli "$port" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.05
    done
    echo "server $name did not start:" >&2; cat "$dir/$name.log" >&2; exit 1
}
stop_last() { # stops the server started last
    local last=$((${#pids[@]} - 1))
    kill "${pids[$last]}" 2>/dev/null || true; wait "${pids[$last]}" 2>/dev/null || true
    unset "pids[$last]"; pids=("${pids[@]}")
}
cpu_ticks() { # utime + stime of a process, in clock ticks
    awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
field() { cli "$1" info replication | tr -d '\r' | sed -n "s/^$2://p"; }
wait_up() { # wait_up <replica port>: until the link is up
    for _ in $(seq 6000); do
        [ "$(field "$1" master_link_status)" = up ] && return 0
        sleep 0.01
    done
    echo "replica on $1 never came up" >&2; exit 1
}
wait_converged() { # wait_converged <primary port> <replica port>
    for _ in $(seq 6000); do
        [ "$(field "$2" master_link_status)" = up ] \
            && [ "$(field "$1" master_repl_offset)" = "$(field "$2" slave_repl_offset)" ] && return 0
        sleep 0.01
    done
    echo "replica on $2 never converged" >&2; exit 1
}
value=$(printf 'v%.0s' $(seq 32))
set_rps() { # set_rps <port>: SET -P 16 requests per second
    if [ "$target" = redis ]; then
        redis-benchmark -p "$1" -c 50 -P 16 -n "$requests" -r 1000000 -q \
            SET 'key:__rand_int__' "$value" 2>/dev/null
    else
        redis-benchmark -p "$1" --user admin -a "$pw" -c 50 -P 16 -n "$requests" -r 1000000 \
            -q SET bench 'key:__rand_int__' "$value" 2>/dev/null
    fi | tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1
}
hz=$(getconf CLK_TCK)
per_op() { # per_op <ticks before> <ticks after>: CPU microseconds per request
    python3 -c "print(f'{($2 - $1) / $hz * 1e6 / $requests:.2f}')"
}
med() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }

throughput_round() { # one round on fresh processes: prints "without with cpu_p0 cpu_p1 cpu_r"
    start "$port_p" primary
    local p=${pids[$((${#pids[@]} - 1))]}
    [ "$target" = redis ] || cli "$port_p" create partition bench string memory >/dev/null
    # A first run fills the key space (its table growth would favour whichever run is second).
    set_rps "$port_p" >/dev/null
    local t0 ta t1 t2 r0 r1 without with
    t0=$(cpu_ticks "$p")
    without=$(set_rps "$port_p")
    ta=$(cpu_ticks "$p")
    if [ "$target" = redis ]; then
        start "$port_r" replica --replicaof 127.0.0.1 "$port_p"
        for _ in $(seq 6000); do
            [ "$(cli "$port_r" info replication | tr -d '\r' | sed -n 's/^master_link_status://p')" = up ] && break
            sleep 0.01
        done
    else
        start "$port_r" replica --replicaof "127.0.0.1:$port_p" --primary-user admin \
            --primary-password "$pw"
        wait_up "$port_r"
    fi
    local rp=${pids[$((${#pids[@]} - 1))]}
    t1=$(cpu_ticks "$p"); r0=$(cpu_ticks "$rp")
    with=$(set_rps "$port_p")
    t2=$(cpu_ticks "$p"); r1=$(cpu_ticks "$rp")
    [ "$target" = redis ] || wait_converged "$port_p" "$port_r"
    stop_last; stop_last
    echo "$without $with $(per_op "$t0" "$ta") $(per_op "$t1" "$t2") $(per_op "$r0" "$r1")"
}

targets=(gokv)
[ "$redis" = 1 ] && targets+=(redis)
declare -A res
for round in $(seq "$rounds"); do
    for target in "${targets[@]}"; do
        echo "== round $round: $target SET throughput, -P 16, 50 clients, without and with a replica" >&2
        # (Not in a $(...) subshell: the servers it starts stay in `pids` for the clean-up.)
        throughput_round >"$dir/round.txt"
        line=$(cat "$dir/round.txt")
        echo "   $line (rps without, with; CPU us/request: primary without, primary with, replica)" >&2
        res[$target]+="$line"$'\n'
    done
done
target=gokv
rows=""
for t in "${targets[@]}"; do
    col() { printf '%s' "${res[$t]}" | awk -v c="$1" 'NF { print $c }' | xargs; }
    # shellcheck disable=SC2046
    w=$(med $(col 1)); x=$(med $(col 2)); c0=$(med $(col 3)); c1=$(med $(col 4)); cr=$(med $(col 5))
    ratios=$(printf '%s' "${res[$t]}" | awk 'NF { printf "%.2f ", $2 / $1 }')
    rows+="| $t: SET -P 16 rps without / with one replica (median of $rounds) | $w / $x |"$'\n'
    rows+="| $t: with / without, per round | $ratios|"$'\n'
    rows+="| $t: CPU us per request: primary without / primary with / replica | $c0 / $c1 / $cr |"$'\n'
done
if [ "$sync" = 0 ]; then
    printf '\n| measure | value |\n|---|---|\n%s' "$rows"
    exit 0
fi

echo "== full sync of $keys keys (16-byte keys, 32-byte values)" >&2
start "$port_p" primary
cli "$port_p" create partition bench string memory >/dev/null
python3 - "$keys" "$value" <<'EOF' | cli "$port_p" --pipe >/dev/null
import sys
n, value = int(sys.argv[1]), sys.argv[2].encode()
out = sys.stdout.buffer
batch = 1000
for start in range(0, n, batch):
    count = min(batch, n - start)
    parts = [b"MSET", b"bench"]
    for i in range(start, start + count):
        parts.append(b"key:%012d" % i)
        parts.append(value)
    out.write(b"*%d\r\n" % len(parts))
    for p in parts:
        out.write(b"$%d\r\n%s\r\n" % (len(p), p))
EOF
loaded=$(cli "$port_p" dbsize bench)
began=$(date +%s.%N)
start "$port_r2" replica2 --replicaof "127.0.0.1:$port_p" --primary-user admin \
    --primary-password "$pw"
wait_up "$port_r2"
ended=$(date +%s.%N)
logged=$(sed -n 's/.*full sync from .* done in \([0-9]*\) ms.*/\1/p' "$dir/replica2.log" | tail -1)
copied=$(cli "$port_r2" dbsize bench)
rss_p=$(ps -o rss= -p "${pids[0]}")
rss_r=$(ps -o rss= -p "${pids[1]}")

secs=$(python3 -c "print(f'{$ended - $began:.2f}')")
printf '\n| measure | value |\n|---|---|\n%s' "$rows"
cat <<EOF
| full sync of $loaded keys: replica start to link up | $secs s |
| full sync as the replica logs it (handshake to last snapshot) | ${logged:-?} ms |
| keys on the replica after it | $copied |
| RSS primary / replica | $((rss_p / 1024)) MiB / $((rss_r / 1024)) MiB |
EOF
