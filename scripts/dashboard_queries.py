#!/usr/bin/env python3
"""Runs every query of the Grafana dashboard (ops/grafana/gokv.json) against a real Prometheus
that scrapes GoKV, and prints what each returns: the check that the panels show data, without
Grafana.

    scripts/dashboard_queries.py --prometheus http://127.0.0.1:9090 [--dashboard FILE]

Grafana's variables get the values "all" gives them ($instance and $partition: .*) and
$__rate_interval --rate-interval (default 15s: four scrapes at Prometheus's 1 s, what
Grafana picks for such a scrape interval). Prints one line per query: the panel, the legend,
how many series it returned and the first few values. Queries may be empty for good reasons
(a `> 0` filter on an idle server, max-memory unset, the replication metrics before
replication exists); the exit status is 1 only when Prometheus refuses a query.
scripts/dashboard.sh --prometheus runs it against a demonstration server.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090",
                    help="the Prometheus that scrapes GoKV (default %(default)s)")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--dashboard", default=os.path.join(here, "..", "ops", "grafana",
                                                        "gokv.json"))
    ap.add_argument("--rate-interval", default="15s", help="$__rate_interval (default 15s)")
    args = ap.parse_args()
    with open(args.dashboard) as f:
        dashboard = json.load(f)
    refused = 0
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = (target["expr"].replace("$__rate_interval", args.rate_interval)
                    .replace("$instance", ".*").replace("$partition", ".*"))
            url = args.prometheus.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode(
                {"query": expr})
            try:
                with urllib.request.urlopen(url, timeout=10) as reply:
                    result = json.load(reply)["data"]["result"]
            except urllib.error.HTTPError as e:
                refused += 1
                print(f"REFUSED {panel['title']}: {expr}\n  {e.read().decode(errors='replace')}")
                continue
            values = []
            for series in result[:4]:
                labels = {k: v for k, v in series["metric"].items() if k not in ("instance", "job")}
                name = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"
                values.append(f"{name}: {float(series['value'][1]):.4g}")
            more = f" (+{len(result) - 4})" if len(result) > 4 else ""
            print(f"{panel['title'][:30]:30} {target['legendFormat'][:24]:24} "
                  f"{len(result):3} series  {'; '.join(values)}{more}")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
