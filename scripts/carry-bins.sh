#!/usr/bin/env bash
# Gathers what bench-scaling.sh and wakeups.sh need on a machine without network into one
# folder that can be copied there as it is:
#
#   scripts/carry-bins.sh [DIR]        (default bench-results/carry, which git ignores)
#
#   DIR/gokv-server, DIR/gokv-loadtest  release builds (cargo build --release), stripped
#   DIR/redis-server, DIR/redis-benchmark, and DIR/valkey-server when VALKEY_BIN is set:
#                                       small wrappers that run DIR/bin/<name> with
#                                       LD_LIBRARY_PATH=DIR/lib (exec: the pid stays the
#                                       server's, so /proc/<pid>/stat is still its CPU)
#   DIR/lib/                            the shared libraries those binaries load, except the
#                                       C library's own (libc, libm, ld-linux, ...), which
#                                       must come from the target
#   DIR/env.sh                          `source DIR/env.sh` sets GOKV_BIN, LOADTEST_BIN,
#                                       REDIS_BIN (and VALKEY_BIN) and puts DIR on PATH
#
# Then, on the target, from a checkout of this repository (python3 and taskset needed):
#   source DIR/env.sh && scripts/bench-scaling.sh
set -euo pipefail

cd "$(dirname "$0")/.."
dir=${1:-bench-results/carry}
mkdir -p "$dir/bin" "$dir/lib"
dir=$(cd "$dir" && pwd)

if [ -z "${GOKV_BIN:-}" ] || [ -z "${LOADTEST_BIN:-}" ]; then
    echo "== cargo build --release -p gokv -p gokv-loadtest" >&2
    cargo build --release -p gokv -p gokv-loadtest >&2
fi
cp "${GOKV_BIN:-target/release/gokv-server}" "$dir/gokv-server"
cp "${LOADTEST_BIN:-target/release/gokv-loadtest}" "$dir/gokv-loadtest"
if command -v strip >/dev/null; then
    strip "$dir/gokv-server" "$dir/gokv-loadtest"
fi

# A library from the C library itself must match the target's ld.so: never carried.
is_libc() {
    case "$(basename "$1")" in
        libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libresolv.so*) return 0 ;;
    esac
    return 1
}

wrap() { # NAME PATH: DIR/bin/NAME, its libraries, and the DIR/NAME wrapper
    local name=$1 path=$2
    cp "$path" "$dir/bin/$name"
    ldd "$path" | awk '/=> \// { print $3 }' | while read -r lib; do
        is_libc "$lib" || cp -L "$lib" "$dir/lib/"
    done
    cat >"$dir/$name" <<EOF
#!/bin/sh
# $name from the machine this folder was made on, with the shared libraries beside it.
here=\$(cd "\$(dirname "\$0")" && pwd)
LD_LIBRARY_PATH="\$here/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$here/bin/$name" "\$@"
EOF
    chmod +x "$dir/$name"
}

redis_server=${REDIS_BIN:-$(command -v redis-server || true)}
[ -n "$redis_server" ] || { echo "error: no redis-server (set REDIS_BIN)" >&2; exit 1; }
wrap redis-server "$redis_server"
if command -v redis-benchmark >/dev/null; then
    wrap redis-benchmark "$(command -v redis-benchmark)"
else
    echo "warning: no redis-benchmark here: wakeups.sh will need redis-tools on the target" >&2
fi
if [ -n "${VALKEY_BIN:-}" ]; then
    wrap valkey-server "$VALKEY_BIN"
fi

{
    echo "# source this file: the carried binaries for scripts/bench-scaling.sh and wakeups.sh"
    echo "carry=\$(cd \"\$(dirname \"\${BASH_SOURCE[0]}\")\" && pwd)"
    echo "export GOKV_BIN=\"\$carry/gokv-server\" LOADTEST_BIN=\"\$carry/gokv-loadtest\""
    echo "export REDIS_BIN=\"\$carry/redis-server\" PATH=\"\$carry:\$PATH\""
    if [ -n "${VALKEY_BIN:-}" ]; then
        echo "export VALKEY_BIN=\"\$carry/valkey-server\""
    fi
} >"$dir/env.sh"

"$dir/redis-server" --version >/dev/null
"$dir/gokv-server" --version >/dev/null
echo "carried to $dir ($(du -sh "$dir" | cut -f1)); on the target: source $dir/env.sh" >&2
