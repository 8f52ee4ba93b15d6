#!/usr/bin/env python3
"""The Grafana dashboard's panels (ops/grafana/gokv.json) as PNGs, for a person without Grafana.

    scripts/dashboard.py --url http://127.0.0.1:9379/metrics --interval 2 --duration 60 \\
        --out bench-results/dashboard

Scrapes a live GoKV's Prometheus endpoint every --interval seconds for --duration seconds and
computes what the dashboard's queries compute, from consecutive scrapes: a rate is a
counter's increase over the interval divided by its length (an increase below 0 is a
restart: the new value is the increase, as Prometheus's rate() takes it); a p99 is
histogram_quantile over the increase of a histogram's _bucket series (linear within the
bucket, the bucket's lower bound when the rank falls in +Inf); gauges are read as they are.
Partition panels show the 10 largest series (by their peak), as the dashboard's top 20.

Writes to --out: dashboard.png (every panel, one page), one <panel>.png each, and
panels.json (every series drawn: timestamps and values). Prints a summary (mean and peak of
each series) on stdout. --no-plot skips matplotlib and the PNGs (panels.json and the summary
only). Without matplotlib the script says so and how to install it (`pip install
matplotlib`) before it scrapes anything.

Standard library only, apart from matplotlib for drawing.
"""

import argparse
import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.request

# The panels, in the dashboard's order: (file name, title, unit).
PANELS = [
    ("ops_by_command", "Ops/s by command", "ops/s"),
    ("ops_by_partition", "Ops/s by partition (top 10)", "ops/s"),
    ("p99_by_command", "p99 latency by command", "s"),
    ("connected_clients", "Connected clients", "connections"),
    ("memory_by_partition", "Memory by partition (top 10)", "bytes"),
    ("evictions_expirations", "Evictions and expirations/s", "keys/s"),
    ("fsync_p99", "fsync latency p99", "s"),
    ("replication_lag", "Replication lag", "s"),
    ("rejections", "Throttled and OOM rejections/s", "requests/s"),
    ("errors_by_code", "Error replies/s by code", "replies/s"),
    ("ops_by_shard", "Ops/s by shard", "ops/s"),
    ("shard_busy", "Shard busy", "share of a core"),
    ("inbox_and_cpu", "Inbox depth by shard, and CPU", "messages / cores"),
]
TOP = 10

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """Text exposition -> {name: [(labels dict, value)]}. Comments and blank lines skipped."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise ValueError(f"not a sample line: {line!r}")
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        labels = {k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                  for k, v in LABEL.findall(labels)}
        out.setdefault(name, []).append((labels, float(value)))
    return out


def scrape(url, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        if reply.status != 200:
            raise OSError(f"HTTP {reply.status}")
        return parse(reply.read().decode("utf-8"))


def key_of(labels, by):
    return tuple(labels.get(b, "") for b in by)


def grouped(scrape_, name, by, where=None):
    """sum by (by) of a metric in one scrape: {key: value}."""
    out = {}
    for labels, value in scrape_.get(name, []):
        if where and not all(labels.get(k) == v for k, v in where.items()):
            continue
        k = key_of(labels, by)
        out[k] = out.get(k, 0.0) + value
    return out


def increase(before, after):
    """A counter's increase; below 0 the counter restarted from 0 (a server restart)."""
    d = after - before
    return after if d < 0 else d


def rate(prev, cur, dt, name, by, where=None):
    """sum by (by) (rate(name)) between two scrapes: {key: per second}."""
    a, b = grouped(prev, name, by, where), grouped(cur, name, by, where)
    return {k: increase(a.get(k, 0.0), v) / dt for k, v in b.items()}


def quantile(q, buckets):
    """histogram_quantile(q, ...) of one series: buckets is [(le, cumulative count)]."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][0] != math.inf:
        return math.nan
    total = buckets[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == math.inf:
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


def bucket_quantile(prev, cur, q, name, by):
    """histogram_quantile(q, sum by (by, le) (increase(name_bucket))) between two scrapes."""
    bucket = name + "_bucket"
    inc = {}
    before = {}
    for labels, value in prev.get(bucket, []):
        k = key_of(labels, by) + (labels["le"],)
        before[k] = before.get(k, 0.0) + value
    for labels, value in cur.get(bucket, []):
        k = key_of(labels, by) + (labels["le"],)
        inc[k] = inc.get(k, 0.0) + value
    series = {}
    for k, v in inc.items():
        le = math.inf if k[-1] == "+Inf" else float(k[-1])
        series.setdefault(k[:-1], []).append((le, increase(before.get(k, 0.0), v)))
    return {k: quantile(q, b) for k, b in series.items()}


def gauge(cur, name, by, where=None):
    return grouped(cur, name, by, where)


def label(prefix, key):
    text = "/".join(k for k in key if k != "")
    return f"{prefix}{text}" if prefix or text else ""


def compute(scrapes):
    """Every panel's series: {panel: {series name: [(t, value)]}}, from (t, scrape) pairs."""
    panels = {p[0]: {} for p in PANELS}

    def put(panel, name, t, v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return
        panels[panel].setdefault(name, []).append((t, v))

    def put_all(panel, prefix, t, values, skip_zero=False):
        for k, v in values.items():
            if skip_zero and v == 0:
                continue
            put(panel, label(prefix, k) or prefix.strip() or "all", t, v)

    for (t0, prev), (t1, cur) in zip(scrapes, scrapes[1:]):
        dt = t1 - t0
        t = t1 - scrapes[0][0]
        if dt <= 0:
            continue
        put_all("ops_by_command", "", t, rate(prev, cur, dt, "gokv_commands_total", ["cmd"]))
        put_all("ops_by_partition", "", t,
                rate(prev, cur, dt, "gokv_partition_ops_total", ["partition"]))
        put_all("p99_by_command", "", t,
                bucket_quantile(prev, cur, 0.99, "gokv_command_latency_seconds", ["cmd"]))
        put("connected_clients", "connected", t,
            sum(gauge(cur, "gokv_connected_clients", []).values()))
        put("connected_clients", "max-clients", t,
            sum(gauge(cur, "gokv_config_maxclients", []).values()))
        put("connected_clients", "refused/s", t,
            sum(rate(prev, cur, dt, "gokv_rejected_connections_total", []).values()))
        put_all("memory_by_partition", "", t,
                gauge(cur, "gokv_partition_memory_bytes", ["partition"]))
        put("memory_by_partition", "total data", t,
            sum(gauge(cur, "gokv_memory_used_bytes", []).values()))
        max_memory = sum(gauge(cur, "gokv_memory_max_bytes", []).values())
        if max_memory > 0:
            put("memory_by_partition", "max-memory", t, max_memory)
        put("memory_by_partition", "RSS", t,
            sum(gauge(cur, "gokv_memory_used_rss_bytes", []).values()))
        put_all("evictions_expirations", "evicted ", t,
                rate(prev, cur, dt, "gokv_partition_evicted_keys_total", ["partition"]), True)
        put_all("evictions_expirations", "expired ", t,
                rate(prev, cur, dt, "gokv_partition_expired_keys_total", ["partition"]), True)
        put_all("fsync_p99", "p99 all shards", t,
                bucket_quantile(prev, cur, 0.99, "gokv_fsync_duration_seconds", []))
        put_all("fsync_p99", "p99 shard ", t,
                bucket_quantile(prev, cur, 0.99, "gokv_fsync_duration_seconds", ["shard"]))
        put("fsync_p99", "fsyncs/s", t,
            sum(rate(prev, cur, dt, "gokv_fsyncs_total", []).values()))
        # The lag is per replica (none without replicas): the worst one is drawn.
        lags = gauge(cur, "gokv_replication_lag_seconds", ["replica"])
        if lags:
            put("replication_lag", "lag", t, max(lags.values()))
        if "gokv_connected_slaves" in cur:
            put("replication_lag", "replicas", t,
                sum(gauge(cur, "gokv_connected_slaves", []).values()))
        put_all("rejections", "throttled ", t,
                rate(prev, cur, dt, "gokv_partition_throttled_total", ["partition"]), True)
        put("rejections", "OOM", t,
            sum(rate(prev, cur, dt, "gokv_oom_rejected_writes_total", []).values()))
        put_all("errors_by_code", "", t,
                rate(prev, cur, dt, "gokv_errors_total", ["err"]), True)
        put_all("ops_by_shard", "parsed shard ", t,
                rate(prev, cur, dt, "gokv_shard_commands_total", ["shard"]))
        put_all("ops_by_shard", "forwarded in shard ", t,
                rate(prev, cur, dt, "gokv_shard_forwarded_in_total", ["shard"]))
        put_all("shard_busy", "shard ", t,
                rate(prev, cur, dt, "gokv_shard_busy_seconds_total", ["shard"]))
        put_all("inbox_and_cpu", "inbox shard ", t,
                gauge(cur, "gokv_shard_inbox_messages", ["shard"]))
        cpu = sum(rate(prev, cur, dt, "gokv_cpu_user_seconds_total", []).values()) + \
            sum(rate(prev, cur, dt, "gokv_cpu_sys_seconds_total", []).values())
        put("inbox_and_cpu", "CPU cores", t, cpu)
    # Partition panels: the TOP largest by peak (the fixed lines of the memory panel kept).
    for panel, fixed in (("ops_by_partition", ()),
                         ("memory_by_partition", ("total data", "max-memory", "RSS"))):
        series = panels[panel]
        ranked = sorted((n for n in series if n not in fixed),
                        key=lambda n: -max(v for _, v in series[n]))
        keep = set(ranked[:TOP]) | {n for n in series if n in fixed}
        panels[panel] = {n: series[n] for n in series if n in keep}
    return panels


def summary(panels):
    lines = []
    for key, title, unit in PANELS:
        lines.append(f"{title} ({unit}):")
        series = panels[key]
        if not series:
            why = (" (no replica attached)" if key == "replication_lag" else "")
            lines.append(f"  no data{why}")
        for name, points in sorted(series.items(), key=lambda s: -max(v for _, v in s[1])):
            values = [v for _, v in points]
            u = RIGHT_AXIS.get(name, unit)
            lines.append(f"  {name:32} mean {fmt(sum(values) / len(values), u):>10}  "
                         f"peak {fmt(max(values), u):>10}" + (f"  {u}" if u != unit else ""))
    return "\n".join(lines)


def fmt(v, unit):
    if unit == "s":
        for scale, suffix in ((1, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
            if abs(v) >= scale or scale == 1e-9:
                return f"{v / scale:.3g} {suffix}"
    if unit == "bytes":
        for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(v) >= scale:
                return f"{v / scale:.3g} {suffix}"
        return f"{v:.0f} B"
    return f"{v:,.1f}" if abs(v) < 100 else f"{v:,.0f}"


# Series drawn on a panel's right axis, with their own unit.
RIGHT_AXIS = {"refused/s": "connections/s", "fsyncs/s": "ops/s", "replicas": "replicas",
              "CPU cores": "cores"}


def draw(panels, out, source, plt):
    """One PNG per panel and one page of them all."""
    cols = 3
    rows = math.ceil(len(PANELS) / cols)
    page, axes = plt.subplots(rows, cols, figsize=(cols * 6.4, rows * 3.6))
    page.suptitle(f"GoKV: {source}", fontsize=13)
    for i, (key, title, unit) in enumerate(PANELS):
        single, ax_single = plt.subplots(figsize=(8, 4.2))
        for ax in (axes.flat[i], ax_single):
            plot_panel(ax, key, title, unit, panels[key])
        ax_single.set_xlabel("seconds")
        single.tight_layout()
        single.savefig(os.path.join(out, f"{key}.png"), dpi=90)
        plt.close(single)
    for ax in list(axes.flat)[len(PANELS):]:
        ax.axis("off")
    page.tight_layout(rect=(0, 0, 1, 0.97))
    page.savefig(os.path.join(out, "dashboard.png"), dpi=72)
    plt.close(page)


def plt_colors():
    import matplotlib.pyplot as plt
    return plt.rcParams["axes.prop_cycle"].by_key()["color"]


def plot_panel(ax, key, title, unit, series):
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=7)
    if not series:
        why = ("no data: no replica attached" if key == "replication_lag" else "no data")
        ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes,
                fontsize=9, color="gray")
        return
    right = None
    peak = {n: max(v for _, v in series[n]) for n in series}
    colors = plt_colors()
    for i, name in enumerate(sorted(series, key=lambda n: -peak[n])):
        points = series[name]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        color = colors[i % len(colors)]
        if name == "max-clients" and peak.get("connected", 0) < 0.2 * peak[name]:
            # Far above the connections: drawn, it would flatten them to the axis.
            ax.plot([], [], "--", color=color, label=f"max-clients {peak[name]:,.0f} (off scale)")
            continue
        target = ax
        if name in RIGHT_AXIS:
            right = right or ax.twinx()
            right.tick_params(labelsize=7)
            right.set_ylabel(f"{name} ({RIGHT_AXIS[name]})", fontsize=8)
            target = right
        style = "--" if name in ("max-clients", "max-memory") else "-"
        target.plot(xs, ys, style, label=name, linewidth=1.2, color=color)
    ax.set_ylabel(unit, fontsize=8)
    if unit == "bytes":
        # Ticks at powers of two (1, 2, 4 MiB ...), which bytes read best in.
        from matplotlib.ticker import MultipleLocator
        top = max(max(v for _, v in points) for points in series.values())
        if top > 0:
            ax.yaxis.set_major_locator(MultipleLocator(2 ** math.ceil(math.log2(top / 6))))
        ax.yaxis.set_major_formatter(lambda v, _: fmt(v, "bytes"))
    if unit == "s":
        ax.yaxis.set_major_formatter(lambda v, _: fmt(v, "s"))
    ax.set_ylim(bottom=0)
    if right is not None:
        right.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    if right is not None:
        h2, l2 = right.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=6, loc="upper left", ncol=2 if len(labels) > 6 else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:9379/metrics",
                    help="the server's /metrics (default %(default)s)")
    ap.add_argument("--interval", type=float, default=2.0,
                    help="seconds between scrapes (default %(default)s)")
    ap.add_argument("--duration", type=float, default=60.0,
                    help="seconds to scrape for (default %(default)s)")
    ap.add_argument("--out", default="bench-results/dashboard",
                    help="directory for the PNGs and panels.json (default %(default)s)")
    ap.add_argument("--no-plot", action="store_true",
                    help="no PNGs (no matplotlib needed): panels.json and the summary only")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds a scrape may take")
    args = ap.parse_args()
    if args.interval <= 0 or args.duration < args.interval:
        ap.error("--interval must be > 0 and --duration at least one --interval")

    plt = None
    if not args.no_plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is missing: install it with `pip install matplotlib` (or run "
                  "with --no-plot for panels.json and the summary only)", file=sys.stderr)
            return 2

    try:
        first = scrape(args.url, args.timeout)
    except (OSError, urllib.error.URLError, ValueError) as e:
        print(f"cannot scrape {args.url}: {e}", file=sys.stderr)
        return 1
    if "gokv_up" not in first:
        print(f"{args.url} does not look like GoKV's /metrics (no gokv_up)", file=sys.stderr)
        return 1
    start = time.monotonic()
    scrapes = [(start, first)]
    failures = 0
    n = int(args.duration / args.interval)
    for i in range(1, n + 1):
        time.sleep(max(0.0, start + i * args.interval - time.monotonic()))
        try:
            scrapes.append((time.monotonic(), scrape(args.url, args.timeout)))
        except (OSError, urllib.error.URLError, ValueError) as e:
            failures += 1
            print(f"scrape {i} failed: {e} (a gap in the panels)", file=sys.stderr)
    print(f"{len(scrapes)} scrapes of {args.url} over {scrapes[-1][0] - start:.1f} s"
          + (f", {failures} failed" if failures else ""), file=sys.stderr)
    if len(scrapes) < 2:
        print("fewer than two scrapes: no rates to draw", file=sys.stderr)
        return 1

    panels = compute(scrapes)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "panels.json"), "w") as f:
        json.dump({"url": args.url, "interval": args.interval, "scrapes": len(scrapes),
                   "panels": {k: {"title": t, "unit": u, "series": panels[k]}
                              for k, t, u in PANELS}}, f, indent=1)
    print(summary(panels))
    if plt is not None:
        draw(panels, args.out, args.url, plt)
        print(f"PNGs in {args.out}/: dashboard.png and "
              + ", ".join(f"{k}.png" for k, _, _ in PANELS), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
