#!/usr/bin/env bash
# max-ops accuracy and isolation (issue 11's "max-ops 10000 under a load that asks for
# 50,000/s: served rate within 10% of 10,000/s, and an unthrottled partition on the same shard
# keeps its throughput"). See scripts/README.md.
#
#   scripts/bench-throttle.sh [--max-ops N] [--offered R] [--seconds S] [--port P] [--no-build]
#
# One gokv-server --shards 1 (so every partition shares one shard), partitions `limited`
# (max-ops N, default 10000), `open` (no options, the same load unthrottled) and `free` (no
# options). `free` runs under gokv-loadtest at full speed for S seconds (default 5) three
# times: alone; while a second loadtest offers R requests/s (default 50000) to `open`; and
# while it offers them to `limited`. The served rate of `limited` is read from the server
# (STATS PARTITION `ops`, which counts only the commands that ran) over the measured window,
# after its one-second burst is spent, so the burst does not inflate it. The client shares
# the machine with the server: compare `free`'s three figures with one another. Prints one
# table. Every process started here is stopped on exit, Ctrl-C included.
set -euo pipefail

cd "$(dirname "$0")/.."

max_ops=10000
offered=50000
seconds=5
port=7471
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --max-ops) max_ops=$2; shift 2 ;;
        --offered) offered=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

for tool in redis-cli python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done
if [ "$build" = 1 ]; then
    echo "== cargo build --release -p gokv -p gokv-loadtest" >&2
    cargo build --release -p gokv -p gokv-loadtest >&2
fi
server=target/release/gokv-server
loadtest=target/release/gokv-loadtest

pw=throttle-pw
dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

"$server" --port "$port" --data-dir "$dir/data" --shards 1 --admin-password "$pw" \
    >"$dir/server.log" 2>&1 &
pids+=($!)
cli() { redis-cli -p "$port" --user admin --pass "$pw" --no-auth-warning "$@"; }
for _ in $(seq 60); do
    cli ping 2>/dev/null | grep -q PONG && break
    sleep 0.25
done
cli create partition limited string memory max-ops "$max_ops" >/dev/null
cli create partition free string memory >/dev/null
cli create partition open string memory >/dev/null

# A STATS PARTITION counter of partition $1 named $2.
stat() { cli stats partition "$1" | awk -v f="$2" 'prev == f { print; exit } { prev = $0 }'; }
now() { date +%s.%N; }
lt() {
    "$loadtest" --port "$port" --user admin --password "$pw" -q --json --ratio 1:1 \
        --keys 10000 "$@"
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

echo "== free alone: ${seconds}s at full speed" >&2
alone=$(lt --partitions free -c 16 -P 16 --duration "${seconds}s" | field ops_per_sec)

echo "== open offered ${offered}/s (no max-ops) beside free at full speed" >&2
lt --partitions open -c 20 -P 1 --rate "$offered" --duration "$((seconds + 3))s" \
    >"$dir/open.json" &
pids+=($!)
sleep 1.5
open0=$(stat open ops)
o0=$(now)
beside_open=$(lt --partitions free -c 16 -P 16 --duration "${seconds}s" | field ops_per_sec)
open1=$(stat open ops)
o1=$(now)
wait "${pids[-1]}" || true

echo "== limited offered ${offered}/s (max-ops $max_ops) beside free at full speed" >&2
lt --partitions limited -c 20 -P 1 --rate "$offered" --duration "$((seconds + 3))s" \
    >"$dir/limited.json" &
pids+=($!)
# Let the burst (one second's worth) drain before the window opens.
sleep 1.5
ops0=$(stat limited ops)
thr0=$(stat limited throttled)
t0=$(now)
beside=$(lt --partitions free -c 16 -P 16 --duration "${seconds}s" | field ops_per_sec)
ops1=$(stat limited ops)
thr1=$(stat limited throttled)
t1=$(now)
wait "${pids[-1]}" || true

python3 - "$max_ops" "$offered" "$ops0" "$ops1" "$thr0" "$thr1" "$t0" "$t1" "$alone" "$beside" \
    "$open0" "$open1" "$o0" "$o1" "$beside_open" <<'EOF'
import sys
max_ops, offered = int(sys.argv[1]), int(sys.argv[2])
ops0, ops1, thr0, thr1 = map(int, sys.argv[3:7])
t0, t1, alone, beside = map(float, sys.argv[7:11])
open0, open1 = map(int, sys.argv[11:13])
o0, o1, beside_open = map(float, sys.argv[13:16])
window = t1 - t0
served = (ops1 - ops0) / window
refused = (thr1 - thr0) / window
open_served = (open1 - open0) / (o1 - o0)
print(f"limited: max-ops {max_ops}, offered {offered}/s, measured over {window:.1f} s")
print()
print("| limited served/s | off by | limited refused/s | open served/s (no max-ops) "
      "| free alone | free beside open | free beside limited |")
print("|---|---|---|---|---|---|---|")
print(f"| {served:.0f} | {100 * (served - max_ops) / max_ops:+.1f}% | {refused:.0f} "
      f"| {open_served:.0f} | {alone:.0f} ops/s | {beside_open:.0f} ops/s "
      f"({100 * beside_open / alone:.0f}%) | {beside:.0f} ops/s ({100 * beside / alone:.0f}%) |")
EOF
