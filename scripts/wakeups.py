#!/usr/bin/env python3
"""Wake-ups and syscalls per request, server side: GoKV (default flags, --shards 1) vs Redis.

Run through scripts/wakeups.sh (it checks the tools and stops everything on exit).

For each server and each test (`redis-benchmark -c 50 -P 16` and `-P 1`: GET, SET, PING):

  1. a plain run of -n N (no tracer): context switches, voluntary and involuntary, summed
     over the server's threads (/proc/<pid>/task/*/status, before and after), server CPU per
     request (/proc/<pid>/stat utime+stime) and throughput; with `perf` working, `perf stat -p
     PID` runs alongside with the software events (context-switches, cpu-migrations,
     task-clock) and, where the kernel has them, the syscall tracepoints
     (syscalls:sys_enter_epoll_wait, ..._read, ..._futex, raw_syscalls:sys_enter for the
     total): syscall counts by kind, counted in the kernel, from a run that is barely slowed;
  2. a traced run of a smaller fixed -n under `strace -f -c -p PID` (every thread): syscall
     counts by kind (epoll_wait, read/recvfrom, write/sendto, futex, others, and the largest
     others by name). strace stops the server at every call, so it runs several times slower
     and each epoll_wait finds more ready work: its epoll_wait counts are lower than an
     untraced run's. Counts only; no time from it is used.

Everything is reported per 1M requests. The servers run one at a time on 127.0.0.1
(persistence off; GoKV's metrics endpoint off), each with 100k keys filled first.
"""

import argparse
import datetime
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_redis import (KEYSPACE, VALUE32, Ports, RunFailed, Server,  # noqa: E402
                            interrupt_on_signals, load_keys, loadavg, rb_command, redis_benchmark,
                            resp_call, shell_line, stop_all)

TESTS = (("GET", 16), ("SET", 16), ("PING", 16), ("GET", 1), ("SET", 1), ("PING", 1))
KINDS = ("epoll_wait", "read", "write", "futex", "other")
EPOLL = {"epoll_wait", "epoll_pwait", "epoll_pwait2"}
READS = {"read", "recvfrom", "recvmsg", "readv", "recvmmsg"}
WRITES = {"write", "sendto", "sendmsg", "writev", "sendmmsg"}


def ctx_switches(pid):
    """{tid: (voluntary, involuntary)} over the process's threads."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                vol = invol = 0
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        invol = int(line.split()[1])
            out[tid] = (vol, invol)
        except OSError:  # a thread that ended meanwhile
            pass
    return out


def ctx_delta(before, after):
    """Switches between two snapshots; a thread born in between counts from zero."""
    vol = sum(a[0] - before.get(t, (0, 0))[0] for t, a in after.items())
    invol = sum(a[1] - before.get(t, (0, 0))[1] for t, a in after.items())
    return vol, invol


SOFT_EVENTS = ["context-switches", "cpu-migrations", "task-clock"]
# Syscall tracepoints perf can count in the kernel, without strace's stop per call.
TRACE_KINDS = {"epoll_wait": EPOLL, "read": READS, "write": WRITES, "futex": {"futex"}}


def perf_events():
    """The events `perf stat` is given: the software events, plus the syscall tracepoints
    this kernel has (None when perf does not work here)."""
    if not shutil.which("perf"):
        return None
    p = subprocess.run(["perf", "stat", "-e", ",".join(SOFT_EVENTS), "-x,", "--", "true"],
                       capture_output=True, text=True)
    if p.returncode != 0 or "context-switches" not in p.stderr or "<not" in p.stderr:
        return None
    listed = subprocess.run(["perf", "list", "tracepoint"], capture_output=True,
                            text=True).stdout
    names = {w for line in listed.splitlines() for w in line.split()[:1]}
    wanted = [f"syscalls:sys_enter_{c}" for calls in TRACE_KINDS.values() for c in sorted(calls)]
    wanted.append("raw_syscalls:sys_enter")
    trace = [e for e in wanted if e in names]
    if trace:
        t = subprocess.run(["perf", "stat", "-e", ",".join(trace), "-x,", "--", "true"],
                           capture_output=True, text=True)
        if t.returncode != 0 or "<not" in t.stderr:
            trace = []
    return SOFT_EVENTS + trace


def perf_syscalls(perf):
    """Tracepoint counts -> {kind: calls} with `other` and `total` (from raw_syscalls), or
    None when perf counted no syscalls."""
    if "raw_syscalls:sys_enter" not in perf:
        return None
    out = {kind: sum(perf.get(f"syscalls:sys_enter_{c}", 0) for c in calls)
           for kind, calls in TRACE_KINDS.items()}
    out["total"] = perf["raw_syscalls:sys_enter"]
    out["other"] = out["total"] - sum(out[k] for k in TRACE_KINDS)
    return out


class Attached:
    """A tool attached to the server (`perf stat` or `strace`) for the length of a `with`:
    started, given time to attach, stopped with SIGINT (both print their summary then)."""

    def __init__(self, argv, out_path, pidfile, ready_text=None):
        self.argv, self.out_path, self.ready_text = argv, out_path, ready_text
        self.pidfile = pidfile

    def __enter__(self):
        self.err = open(self.out_path + ".stderr", "w+")
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=self.err,
                                     start_new_session=True)
        with open(self.pidfile, "a") as f:  # for wakeups.sh's clean-up, should we be killed
            f.write(f"{self.proc.pid}\n")
        deadline = time.time() + 10
        while self.ready_text and time.time() < deadline:
            self.err.flush()
            with open(self.out_path + ".stderr") as f:
                if self.ready_text in f.read():
                    break
            if self.proc.poll() is not None:
                raise RunFailed(f"{shell_line(self.argv)} exited: {self.stderr()}")
            time.sleep(0.05)
        time.sleep(0.5)  # every thread attached (strace -f attaches them one by one)
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()
        return False

    def stderr(self):
        with open(self.out_path + ".stderr") as f:
            return f.read()[-2000:]


def parse_strace(path):
    """`strace -c` summary -> {kind: calls}, plus total."""
    counts = dict.fromkeys(KINDS, 0)
    others = {}
    seen = False
    with open(path) as f:
        for line in f:
            parts = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(parts) < 5 or not re.match(r"^[\d.]+$", parts[0]):
                continue
            name = parts[-1]
            if name == "total":
                continue
            calls = int(parts[3])
            seen = True
            if name in EPOLL:
                counts["epoll_wait"] += calls
            elif name in READS:
                counts["read"] += calls
            elif name in WRITES:
                counts["write"] += calls
            elif name == "futex":
                counts["futex"] += calls
            else:
                counts["other"] += calls
                others[name] = others.get(name, 0) + calls
    if not seen:
        raise RunFailed(f"no syscall table in {path}")
    counts["total"] = sum(counts[k] for k in KINDS)
    return counts, others


def parse_perf(path):
    """`perf stat -x,` output -> {event: value}."""
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) >= 3 and parts[0] and parts[0][0].isdigit():
                out[parts[2]] = float(parts[0])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    env = os.environ.get
    ap.add_argument("--gokv-bin", default=env("GOKV_BIN", "target/release/gokv-server"))
    ap.add_argument("--redis-bin", default=env("REDIS_BIN") or shutil.which("redis-server"))
    ap.add_argument("--requests-p16", type=int, help="plain run -n at -P 16 (default 1000000)")
    ap.add_argument("--requests-p1", type=int, help="plain run -n at -P 1 (default 200000)")
    ap.add_argument("--strace-p16", type=int, help="traced run -n at -P 16 (default 200000)")
    ap.add_argument("--strace-p1", type=int, help="traced run -n at -P 1 (default 50000)")
    ap.add_argument("--quick", action="store_true", help="smaller -n everywhere (a smoke run)")
    ap.add_argument("--no-strace", action="store_true", help="context switches only")
    ap.add_argument("--no-perf", action="store_true", help="no perf stat beside the plain run")
    ap.add_argument("--tests", help="comma-separated subset, e.g. get16,set1,ping16")
    ap.add_argument("--port-base", type=int, default=7700)
    ap.add_argument("--port-limit", type=int, default=7799)
    ap.add_argument("--out-dir", default="bench-results")
    ap.add_argument("--state-dir")
    args = ap.parse_args()
    q = args.quick
    args.requests_p16 = args.requests_p16 or (200_000 if q else 1_000_000)
    args.requests_p1 = args.requests_p1 or (40_000 if q else 200_000)
    args.strace_p16 = args.strace_p16 or (100_000 if q else 200_000)
    args.strace_p1 = args.strace_p1 or (10_000 if q else 50_000)
    if not os.access(args.gokv_bin, os.X_OK):
        ap.error(f"no gokv-server at {args.gokv_bin!r} (GOKV_BIN)")
    if not (args.redis_bin and os.access(args.redis_bin, os.X_OK)):
        ap.error("no redis-server (REDIS_BIN)")
    if not args.no_strace and not shutil.which("strace"):
        ap.error("strace is missing: apt-get install strace (or pass --no-strace)")
    tests = TESTS
    if args.tests:
        wanted = {t.strip().lower() for t in args.tests.split(",")}
        tests = [t for t in TESTS if f"{t[0].lower()}{t[1]}" in wanted]
        if not tests:
            ap.error(f"--tests: none of {sorted(wanted)} is one of get16,set16,ping16,get1,...")
    state = args.state_dir or tempfile.mkdtemp(prefix="gokv-wakeups-")
    interrupt_on_signals()
    try:
        return run(args, state, tests)
    except (RunFailed, RuntimeError) as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"\ninterrupted ({e or 'Ctrl-C'}); stopping", file=sys.stderr)
        return 130
    finally:
        stop_all()
        if not args.state_dir:
            shutil.rmtree(state, ignore_errors=True)


def run(args, state, tests):
    pidfile = server_pidfile(state)
    ports = Ports(args.port_base, args.port_limit)
    help_text = subprocess.run([args.gokv_bin, "--help"], capture_output=True, text=True).stdout
    auth = ("admin", secrets.token_hex(12)) if "--admin-password" in help_text else None
    events = None if args.no_perf else perf_events()
    use_perf = events is not None
    servers = [("GoKV default", "gokv", []), ("GoKV --shards 1", "gokv", ["--shards", "1"]),
               ("Redis", "redis", [])]
    print(f"machine: {os.cpu_count()} CPUs, load average {loadavg()}; perf stat "
          f"{'on' if use_perf else 'off'}, strace {'off' if args.no_strace else 'on'}",
          flush=True)
    rows, commands = [], {}
    for si, (name, kind, extra) in enumerate(servers):
        port = ports.take()
        if kind == "gokv":
            data = tempfile.mkdtemp(prefix="gokv-", dir=state)
            argv = [args.gokv_bin, "--bind", "127.0.0.1", "--port", str(port), "--data-dir",
                    data] + extra
            if "--metrics-port" in help_text:
                argv += ["--metrics-port", "0"]
            if auth:
                argv += ["--admin-password", auth[1]]
            server = Server(name, "gokv", argv, port, os.path.join(state, f"s{si}.log"), pidfile,
                            auth)
        else:
            argv = [args.redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--daemonize", "no", "--dir", state]
            server = Server(name, "redis", argv, port, os.path.join(state, f"s{si}.log"),
                            pidfile, None)
        commands[(name, "server")] = shell_line(
            ["<pw>" if auth and a == auth[1] else a for a in argv])
        try:
            threads = len(os.listdir(f"/proc/{server.pid}/task"))
            part = []
            if kind == "gokv":
                reply = resp_call(port, ["CREATE", "PARTITION", "bench", "STRING", "MEMORY"],
                                  auth)
                if not reply.startswith(b"+OK"):
                    raise RunFailed(f"CREATE PARTITION bench on {name}: {reply!r}")
                part = [b"bench"]
            load_keys(port, server.auth, ([b"SET"] + part + [b"key:%012d" % i, VALUE32.encode()]
                                          for i in range(KEYSPACE)))
            for what, pipe in tests:
                row = measure(args, state, server, kind, what, pipe, events, commands, name)
                row.update(server=name, test=f"{what} -P {pipe}", threads=threads)
                rows.append(row)
                print(f"  {name:16} {what:4} -P {pipe:<2} {row['ops']:>10,.0f} ops/s  "
                      f"{row['cpu_us']:5.2f} us/op  cs/1M {row['vol'] + row['invol']:>9,.0f}"
                      + (f"  epoll_wait/1M {row['sys']['epoll_wait']:>9,.0f}"
                         if row.get("sys") else ""), flush=True)
        finally:
            server.stop()
    report = render(args, rows, commands, use_perf)
    print()
    print(report)
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir,
                        f"wakeups-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.md")
    with open(path, "w") as f:
        f.write(report)
    print(f"written: {path}")
    return 0


def server_pidfile(state):
    return os.path.join(state, "pids")


def measure(args, state, server, kind, what, pipe, events, commands, name):
    n = args.requests_p16 if pipe == 16 else args.requests_p1
    cmd = rb_command(what.lower(), kind)
    perf_out = os.path.join(state, "perf.csv")
    before = ctx_switches(server.pid)
    if events:
        perf_argv = ["perf", "stat", "-e", ",".join(events), "-x,", "-o", perf_out, "-p",
                     str(server.pid)]
        with Attached(perf_argv, perf_out, server_pidfile(state)):
            before = ctx_switches(server.pid)
            r = redis_benchmark(server, n, pipe, cmd, server.auth)
            after = ctx_switches(server.pid)
        perf = parse_perf(perf_out)
        commands.setdefault(("perf", ""), shell_line(perf_argv[:-1] + ["<server pid>"]))
    else:
        r = redis_benchmark(server, n, pipe, cmd, server.auth)
        after = ctx_switches(server.pid)
        perf = {}
    vol, invol = ctx_delta(before, after)
    per_m = 1e6 / n
    row = {"n": n, "ops": r["ops"], "cpu_us": r["cpu_us"], "vol": vol * per_m,
           "invol": invol * per_m}
    if perf:
        row["perf_cs"] = perf.get("context-switches", 0) * per_m
        row["perf_mig"] = perf.get("cpu-migrations", 0) * per_m
        sc = perf_syscalls(perf)
        if sc:
            row["perf_sys"] = {k: v * per_m for k, v in sc.items()}
    commands.setdefault((name, f"{what} -P {pipe}"), shell_line(
        ["<pw>" if server.auth and a == server.auth[1] else a for a in r["argv"]]))
    if not args.no_strace:
        sn = args.strace_p16 if pipe == 16 else args.strace_p1
        out = os.path.join(state, "strace.txt")
        st_argv = ["strace", "-f", "-c", "-o", out, "-p", str(server.pid)]
        with Attached(st_argv, out, server_pidfile(state), ready_text="attached"):
            redis_benchmark(server, sn, pipe, cmd, server.auth)
        counts, others = parse_strace(out)
        row["strace_n"] = sn
        row["sys"] = {k: v * 1e6 / sn for k, v in counts.items()}
        row["others"] = sorted(((v * 1e6 / sn, k) for k, v in others.items()), reverse=True)
        commands.setdefault(("strace", ""), shell_line(st_argv[:-1] + ["<server pid>"]))
    return row


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "n/a"


def sys_cells(sys_counts):
    return [f"{sys_counts[k]:,.0f}" for k in KINDS] + [f"{sys_counts['total'] / 1e6:.3f}"]


def render(args, rows, commands, use_perf):
    lines = []
    w = lines.append
    perf_sys = bool(rows) and all("perf_sys" in r for r in rows)
    w(f"# Wake-ups and syscalls per 1M requests, server side, "
      f"{datetime.datetime.now().isoformat(timespec='seconds')}")
    w("")
    w(f"- machine: {os.cpu_count()} CPUs, load average {loadavg()}; redis-benchmark -c 50 "
      f"-r {KEYSPACE:,} (keys filled first), 32-byte values, PING is `-t ping_mbulk`")
    w(f"- plain runs, -n {args.requests_p16:,} at -P 16 and {args.requests_p1:,} at -P 1: "
      "context switches from /proc/<pid>/task/*/status, CPU/op from /proc/<pid>/stat"
      + (", CPU migrations from `perf stat`" if use_perf else "")
      + (", syscalls by kind from `perf stat` syscall tracepoints (counted in the kernel: "
         "the run is barely slowed)" if perf_sys else ""))
    if not args.no_strace:
        w(f"- traced runs, -n {args.strace_p16:,} at -P 16 and {args.strace_p1:,} at -P 1: "
          "syscalls by kind from `strace -f -c -p` (counts only: strace stops the server at "
          "every call, so it runs slower and each epoll_wait finds more work than untraced)")
    w("- every count is per 1M requests; `thr`: the server's threads; `sys/req`: all "
      "syscalls per request")
    w("")
    head = ["server", "thr", "test", "ops/s", "CPU µs/op", "cs vol", "cs invol"]
    if use_perf:
        head += ["migrations"]
    if perf_sys:
        head += ["epoll_wait", "read/recv", "write/send", "futex", "other", "sys/req"]
    w("Plain runs:")
    w("")
    w("| " + " | ".join(head) + " |")
    w("|---|---:|---|" + "---:|" * (len(head) - 3))
    for r in rows:
        cells = [r["server"], str(r["threads"]), r["test"], f"{r['ops']:,.0f}",
                 f"{r['cpu_us']:.2f}", f"{r['vol']:,.0f}", f"{r['invol']:,.0f}"]
        if use_perf:
            cells.append(f"{r.get('perf_mig', 0):,.0f}")
        if perf_sys:
            cells += sys_cells(r["perf_sys"])
        w("| " + " | ".join(cells) + " |")
    if use_perf:
        gaps = [abs(r["perf_cs"] - r["vol"] - r["invol"]) / (r["vol"] + r["invol"])
                for r in rows if r.get("perf_cs") and r["vol"] + r["invol"]]
        if gaps:
            w("")
            w(f"`perf stat`'s context-switches agree with /proc's voluntary + involuntary "
              f"within {max(gaps) * 100:.0f}% on every row.")
    if not args.no_strace:
        w("")
        w("Under strace:")
        w("")
        sh = ["server", "test", "epoll_wait", "read/recv", "write/send", "futex", "other",
              "sys/req", "largest `other`"]
        w("| " + " | ".join(sh) + " |")
        w("|---|---|" + "---:|" * 6 + "---|")
        for r in rows:
            top = ", ".join(f"{k} {v:,.0f}" for v, k in r["others"][:3]) or "none"
            w("| " + " | ".join([r["server"], r["test"]] + sys_cells(r["sys"]) + [top]) + " |")
    # GoKV / Redis for the figures the issue names.
    by = {(r["server"], r["test"]): r for r in rows}
    src = "perf_sys" if perf_sys else ("sys" if not args.no_strace else None)
    ratio_rows = []
    for r in rows:
        red = by.get(("Redis", r["test"]))
        if r["server"] == "Redis" or not red:
            continue
        cells = [r["server"], r["test"], ratio(r["vol"] + r["invol"], red["vol"] + red["invol"]),
                 ratio(r["cpu_us"], red["cpu_us"])]
        if src:
            cells += [ratio(r[src]["epoll_wait"], red[src]["epoll_wait"]),
                      ratio(r[src]["total"], red[src]["total"])]
        ratio_rows.append("| " + " | ".join(cells) + " |")
    if ratio_rows:
        w("")
        w("GoKV / Redis, same test" + (f" (syscalls from the {'plain' if perf_sys else 'traced'} "
                                       "runs)" if src else "") + ":")
        w("")
        rh = ["server", "test", "context switches", "CPU/op"]
        if src:
            rh += ["epoll_wait", "all syscalls"]
        w("| " + " | ".join(rh) + " |")
        w("|---|---|" + "---:|" * (len(rh) - 2))
        lines.extend(ratio_rows)
    w("")
    w("## Commands")
    w("")
    w("```sh")
    w("scripts/wakeups.sh" + (" --quick" if args.quick else ""))
    for (name, what), cmd in commands.items():
        w(f"# {name} {what}".rstrip())
        w(cmd)
    w("```")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
