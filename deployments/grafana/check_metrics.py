#!/usr/bin/env python3
"""Checks the Grafana dashboard and the Prometheus rules against what Envoy + tdspool export.

Both directions fail the check:
  - an expression (panel target, template variable, annotation, rule) that reads a metric the
    capture does not have: a panel or alert on a stat that no longer exists;
  - a tdspool metric (envoy_tdspool_*) in the capture that no dashboard panel reads: a new stat
    without a panel.

The capture is a live /stats/prometheus: the integration test TestDashboardMatchesLiveStats
(envoy/integration) drives traffic through a real Envoy with the module, Redis and client TLS,
writes /stats/prometheus to a file and runs this script on it, so `make test` runs the check.
Envoy's own metrics that only the production bootstrap has (overload manager, circuit-breaker
remaining_cx) are read from testdata/stats_prometheus_production_sample.txt; tdspool's names
are only ever taken from the live capture.

It also checks the dashboard's structure (schemaVersion, the DS_PROMETHEUS datasource variable,
unique panel ids, grid positions) and, when promtool is on PATH, the PromQL syntax of every
dashboard expression (Grafana variables replaced by sample values).

  python3 deployments/grafana/check_metrics.py --capture stats.txt   # a saved /stats/prometheus
  python3 deployments/grafana/check_metrics.py --live http://127.0.0.1:19901/stats/prometheus
  python3 deployments/grafana/check_metrics.py --live URL --prometheus http://127.0.0.1:9090
        # also evaluate every expression on a running Prometheus (errors fail the check;
        # empty results are listed, as counters that never moved can legitimately be absent)

Needs PyYAML (Debian: python3-yaml).
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DASHBOARD = os.path.join(HERE, "tdspool-dashboard.json")
RULE_FILES = sorted(glob.glob(os.path.join(ROOT, "deployments", "prometheus", "*.yml")))
# Envoy's own metrics of the production bootstrap (tdspool lines removed: see testdata/README.md).
ENVOY_SAMPLE = os.path.join(HERE, "testdata", "stats_prometheus_production_sample.txt")
GENERATOR = "deployments/grafana/dashboard.go"
REGENERATE = "go generate ./deployments/grafana"

# PromQL words that look like identifiers but are not metric names.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan", "atan2", "start", "end"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
IDENT = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)")

# Values substituted for Grafana's variables when an expression is checked or evaluated.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "30s",
                "$job": ".*", "$instance": ".*", "$bucket": ".*"}


def metric_names(expr):
    """Metric names read by one PromQL expression."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'", '""', expr)   # string literals
    m = re.match(r"\s*label_values\((.*)\)\s*$", e, re.S)                  # Grafana query var
    if m:
        e = m.group(1).rsplit(",", 1)[0] if "," in m.group(1) else m.group(1)
    e = re.sub(r"\{[^{}]*\}", " ", e)          # label matchers
    e = re.sub(r"\[[^\[\]]*\]", " ", e)        # range selectors / subqueries
    e = GROUPING.sub(" ", e)                   # by (...), on (...), group_left (...)
    names = set()
    for m in IDENT.finditer(e):
        word, rest = m.group(1), e[m.end():]
        if re.match(r"\s*\(", rest):           # function or aggregation call
            continue
        if word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def grafana_to_promql(expr):
    for k in sorted(GRAFANA_VARS, key=len, reverse=True):
        expr = expr.replace(k, GRAFANA_VARS[k])
    return expr


def exposition_names(text):
    """Metric names in a Prometheus text exposition → their # TYPE (histograms add their
    _bucket, _sum and _count series)."""
    names = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            kind = kind.strip()
            names[name] = kind
            if kind in ("histogram", "summary"):
                names.update({name + sfx: kind for sfx in ("_bucket", "_sum", "_count")})
        elif line and not line.startswith("#"):
            names.setdefault(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0), "untyped")
    return names


def dashboard_exprs(d, problems):
    """(where, expr) pairs from the dashboard, plus structural checks."""
    out = []
    if d.get("schemaVersion", 0) < 36:
        problems.append(f"dashboard: schemaVersion {d.get('schemaVersion')} is older than 36")
    tvars = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
    ds = tvars.get("DS_PROMETHEUS")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("dashboard: no datasource variable DS_PROMETHEUS of type prometheus")
    if "bucket" not in tvars:
        problems.append("dashboard: no 'bucket' template variable")
    for v in tvars.values():
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((f"variable {v['name']}", q))
    for a in d.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append((f"annotation {a['name']}", a["expr"]))
    ids = set()
    for p in d.get("panels", []):
        pid, title, gp = p.get("id"), p.get("title"), p.get("gridPos", {})
        if pid in ids:
            problems.append(f"panel {title!r}: duplicate id {pid}")
        ids.add(pid)
        if gp.get("x", 0) + gp.get("w", 0) > 24:
            problems.append(f"panel {title!r}: gridPos exceeds 24 columns")
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            problems.append(f"panel {title!r}: datasource is not ${{DS_PROMETHEUS}}")
        if not p.get("targets"):
            problems.append(f"panel {title!r}: no targets")
        for t in p.get("targets", []):
            if t.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
                problems.append(f"panel {title!r} {t.get('refId')}: datasource is not ${{DS_PROMETHEUS}}")
            out.append((f"panel {title!r} {t.get('refId')}", t["expr"]))
    return out


def rule_exprs(problems):
    try:
        import yaml
    except ImportError:
        sys.exit("check_metrics.py needs PyYAML (apt-get install python3-yaml / pip install pyyaml)")
    exprs, recorded = [], {}
    for path in RULE_FILES:
        with open(path) as f:
            doc = yaml.safe_load(f)
        if not isinstance(doc, dict) or "groups" not in doc:
            continue   # prometheus.yml itself
        for g in doc["groups"]:
            for r in g["rules"]:
                name = r.get("alert") or r.get("record")
                if "record" in r:
                    recorded[r["record"]] = metric_names(str(r["expr"]))
                exprs.append((f"{os.path.basename(path)} {name}", str(r["expr"])))
    return exprs, recorded


def promtool_syntax(exprs, problems):
    """PromQL syntax of dashboard expressions, through `promtool check rules`."""
    promtool = shutil.which("promtool")
    if not promtool:
        print("promtool not found: PromQL syntax of dashboard expressions not checked")
        return
    import yaml
    rules = [{"record": f"check:expr_{i}", "expr": grafana_to_promql(e)} for i, (_, e) in enumerate(exprs)
             if not e.lstrip().startswith("label_values(")]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
        path = f.name
    try:
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append("promtool rejected dashboard expressions:\n" + r.stdout + r.stderr)
        else:
            print(f"promtool: {len(rules)} dashboard expressions parse")
    finally:
        os.unlink(path)


def evaluate(prom_url, exprs, problems):
    empty = []
    for where, expr in exprs:
        if expr.lstrip().startswith("label_values("):
            metric = metric_names(expr)
            q = " or ".join(sorted(metric))
        else:
            q = grafana_to_promql(expr)
        url = prom_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as err:
            problems.append(f"{where}: Prometheus error {err.code}: {err.read().decode()[:300]}")
            continue
        if body.get("status") != "success":
            problems.append(f"{where}: {body}")
        elif not body["data"]["result"]:
            empty.append(where)
    print(f"evaluated {len(exprs)} expressions on {prom_url}: {len(exprs) - len(empty)} returned data")
    for w in empty:
        print(f"  (no data) {w}")


HOW_TO_SHOW = {
    "counter": "a rate() or increase() of it",
    "gauge": "its value (sum by (bucket) for per-proxy gauges, max for fleet-wide ones)",
    "histogram": "histogram_quantile() over its _bucket series",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--capture", metavar="FILE", help="a saved /stats/prometheus of Envoy + tdspool")
    src.add_argument("--live", metavar="URL", help="read this /stats/prometheus URL")
    ap.add_argument("--prometheus", help="also evaluate every expression on this Prometheus")
    ap.add_argument("-v", "--verbose", action="store_true", help="list the metric names used")
    args = ap.parse_args()

    if args.live:
        text = urllib.request.urlopen(args.live, timeout=10).read().decode()
        source = args.live
    else:
        with open(args.capture) as f:
            text = f.read()
        source = args.capture
    live = exposition_names(text)
    tdspool_live = {n: k for n, k in live.items() if n.startswith("envoy_tdspool_")}
    if not tdspool_live:
        sys.exit(f"{source}: no envoy_tdspool_* metric: not a capture of Envoy with tdspool")
    with open(ENVOY_SAMPLE) as f:
        envoy_own = {n for n in exposition_names(f.read()) if not n.startswith("envoy_tdspool_")}

    problems = []
    with open(DASHBOARD) as f:
        dashboard = json.load(f)   # fails loudly on malformed JSON
    dexprs = dashboard_exprs(dashboard, problems)
    rexprs, recorded = rule_exprs(problems)
    known = set(live) | envoy_own | set(recorded) | {"up"}

    panel_reads, used = set(), set()
    for where, expr in dexprs + rexprs:
        names = metric_names(expr)
        if not names and not re.fullmatch(r"\s*vector\(\s*[0-9.eE+-]+\s*\)\s*", expr):
            problems.append(f"{where}: no metric name found in {expr!r}")
        for n in sorted(names - known):
            fix = (f"rename or remove it in {GENERATOR}, then run `{REGENERATE}`"
                   if where.startswith(("panel", "variable", "annotation"))
                   else "rename or remove it in deployments/prometheus/ (and its test in alerts_test.yml)")
            problems.append(f"{where}: reads {n}, which Envoy + tdspool no longer export: {fix}")
        used |= names
        if where.startswith("panel"):
            panel_reads |= names

    def base(n):
        return re.sub(r"_(bucket|sum|count)$", "", n) if live.get(n) == "histogram" else n

    # A panel on a recording rule (tdspool:bucket_max_connections) shows what the rule reads.
    for n in list(panel_reads):
        panel_reads |= recorded.get(n, set())
    shown = {base(n) for n in panel_reads}
    for n in sorted({base(n) for n in tdspool_live} - shown):
        kind = tdspool_live[n]
        problems.append(
            f"{n} ({kind}) is exported but no dashboard panel reads it: add a target with "
            f"{HOW_TO_SHOW.get(kind, 'it')} to a panel in {GENERATOR}, run `{REGENERATE}` "
            f"and commit tdspool-dashboard.json; if it signals trouble, also add an alert to "
            f"deployments/prometheus/alerts.yml with a test in alerts_test.yml")

    promtool_syntax(dexprs, problems)
    if args.prometheus:
        evaluate(args.prometheus, dexprs + rexprs, problems)

    print(f"checked {len(dexprs)} dashboard and {len(rexprs)} rule expressions against {source}")
    print(f"{len(used)} distinct metric names used; "
          f"{len({base(n) for n in tdspool_live})} tdspool metrics exported, all read by a panel"
          if not problems else f"{len(used)} distinct metric names used")
    if args.verbose:
        for n in sorted(used):
            print("  ", n)
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print("  " + p)
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
