#!/usr/bin/env bash
# The limit for PING (issue 17): redis-benchmark PING against a null server (one thread that
# frames RESP and answers +PONG, storing nothing: loadtest/null-server.c), Redis 7 and GoKV
# (default flags and --shards 1), in interleaved rounds, with the server's and the client's
# CPU per request beside the throughput. When the client shares the server's cores, the
# null server's row is what any server can reach there; a GoKV row at the null server's CPU
# per op is at the limit.
#
#   scripts/bench-null.sh [ROUNDS] [PIPELINE] [REQUESTS]     (defaults: 5 16 1000000)
#
# Binaries: GOKV_BIN (default target/release/gokv-server, built here if missing), cc for the
# null server, redis-server and redis-benchmark on PATH. Servers bind 127.0.0.1 on random
# ports in 20000-60000 and are stopped after each run and on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-5}
pipeline=${2:-16}
requests=${3:-1000000}
gokv=${GOKV_BIN:-target/release/gokv-server}
[ -x "$gokv" ] || cargo build --release --bin gokv-server
work=$(mktemp -d /tmp/gokv-null.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
cc -O2 -o "$work/null-server" loadtest/null-server.c
tck=$(getconf CLK_TCK)
password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# start KIND PORT: starts a server in the background ($! is its pid).
start() {
    local kind=$1 port=$2 log="$work/${1// /}.log"
    case $kind in
        null) "$work/null-server" "$port" 600 >"$log" 2>&1 & ;;
        redis) redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
                   --dir "$work" >"$log" 2>&1 & ;;
        gokv*) mkdir -p "$work/$port"
               # shellcheck disable=SC2086 # the flags after "gokv" are words
               "$gokv" --port "$port" --data-dir "$work/$port" --admin-password "$password" \
                   ${kind#gokv} >"$log" 2>&1 & ;;
    esac
}

kinds=(null redis "gokv" "gokv--shards 1")
declare -A ops cpu client
for round in $(seq "$rounds"); do
    for kind in "${kinds[@]}"; do
        auth=()
        [[ $kind == gokv* ]] && auth=(--user admin -a "$password")
        # A random port another program holds fails the start: try another.
        for _ in 1 2 3 4 5; do
            port=$((20000 + RANDOM % 40000))
            start "$kind" "$port"
            pid=$!
            pids+=("$pid")
            for _ in $(seq 50); do
                redis-cli -p "$port" "${auth[@]}" --no-auth-warning PING >/dev/null 2>&1 && break 2
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill "$pid" 2>/dev/null || true
        done
        before=$(cpu_ticks "$pid")
        line=$(/usr/bin/time -o "$work/time" -f '%U %S' timeout 120 redis-benchmark \
                   -p "$port" "${auth[@]}" -c 50 -n "$requests" -P "$pipeline" --csv \
                   -t ping_mbulk 2>/dev/null | tail -1)
        line="$line $(cat "$work/time")"
        after=$(cpu_ticks "$pid")
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        rps=$(echo "$line" | cut -d, -f2 | tr -d '"')
        read -r cu cs <<<"$(echo "$line" | awk '{print $(NF-1), $NF}')"
        server_us=$(awk -v t=$((after - before)) -v n="$requests" -v k="$tck" \
            'BEGIN {printf "%.3f", t / k * 1e6 / n}')
        client_us=$(awk -v u="$cu" -v s="$cs" -v n="$requests" \
            'BEGIN {printf "%.3f", (u + s) * 1e6 / n}')
        printf 'round %d  %-16s %12.0f ops/s  server %s us/op  client %s us/op  load %s\n' \
            "$round" "$kind" "$rps" "$server_us" "$client_us" "$(cut -d' ' -f1 /proc/loadavg)"
        ops[$kind]+="$rps "
        cpu[$kind]+="$server_us "
        client[$kind]+="$client_us "
    done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
redis_ops=$(echo "${ops[redis]}" | median)
echo
echo "PING -P $pipeline, -c 50, -n $requests, $rounds interleaved rounds, medians"
echo
echo "| server | ops/s | vs Redis | server CPU us/op | client CPU us/op |"
echo "|---|---|---|---|---|"
for kind in "${kinds[@]}"; do
    o=$(echo "${ops[$kind]}" | median)
    printf '| %s | %.0f | %.2fx | %s | %s |\n' "$kind" "$o" \
        "$(awk -v a="$o" -v b="$redis_ops" 'BEGIN {print a / b}')" \
        "$(echo "${cpu[$kind]}" | median)" "$(echo "${client[$kind]}" | median)"
done
