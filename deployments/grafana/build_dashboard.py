#!/usr/bin/env python3
"""Writes tdspool-dashboard.json (the Grafana dashboard) next to this file.

The JSON is the deliverable and is committed; this script is how it is made, so that the
panels stay uniform. Edit here and run `python3 deployments/grafana/build_dashboard.py`.
`make ops-check` runs it with --check (the committed JSON must be what it makes), and the
integration test TestDashboardMatchesLiveStats runs check_metrics.py against a live Envoy
(every metric a panel reads must exist; every tdspool metric must have a panel).

Conventions
  - Datasource: the template variable ${DS_PROMETHEUS} (type "datasource"), so the dashboard
    imports into any Grafana with a Prometheus datasource.
  - Variables: job (one job = one fleet, see deployments/prometheus/prometheus.yml), instance,
    bucket. Every query filters on them.
  - Per-proxy gauges are summed over the selected proxies; fleet-wide gauges (queue_fleet,
    fallback_active) are max()ed, since every proxy reports the same fleet value.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

P = 'job=~"$job",instance=~"$instance"'          # proxy selector
PB = P + ',bucket=~"$bucket"'                     # proxy + bucket selector
RI = "$__rate_interval"

PIN_REASONS = ["transaction", "prepared", "temp_table", "set_option", "cursor", "bulk_load",
               "app_role", "unparsed"]
REQUEST_TYPES = ["sql_batch", "rpc", "attention", "transaction_manager", "bulk_load", "other",
                 "unclassified"]
CLIENT_ERROR_KINDS = ["pool_exhausted", "no_route", "backend_unavailable", "policy", "protocol"]
SLOT_OUTCOMES = ["granted", "timed_out", "queue_full", "refused", "cancelled", "fallback"]
TLS_MODES = [("none", "none (plaintext)"), ("login_only", "TDS 7 login-only"),
             ("full", "TDS 7 full"), ("strict", "TDS 8 strict"), ("failed", "handshake failed")]


class Layout:
    """Places panels on Grafana's 24-column grid, row by row."""

    def __init__(self):
        self.panels, self.y, self.x, self.row_h, self.next_id = [], 0, 0, 0, 1

    def _id(self):
        self.next_id += 1
        return self.next_id - 1

    def row(self, title):
        self._newline()
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def _newline(self):
        if self.x:
            self.y += self.row_h
            self.x, self.row_h = 0, 0

    def add(self, panel, w, h):
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)


def target(expr, legend, ref, instant=False):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref,
         "range": not instant, "instant": instant, "editorMode": "code"}
    return t


def targets(pairs, instant=False):
    return [target(e, l, chr(ord("A") + i), instant) for i, (e, l) in enumerate(pairs)]


def timeseries(title, pairs, unit="short", desc="", stack=False, min0=True, overrides=None,
               legend_calcs=("mean", "max", "lastNotNull")):
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if not stack else 35,
              "showPoints": "never", "spanNulls": False,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    defaults = {"unit": unit, "custom": custom}
    if min0:
        defaults["min"] = 0
    return {"type": "timeseries", "title": title, "description": desc, "datasource": DS,
            "targets": targets(pairs),
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom",
                                   "calcs": list(legend_calcs), "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title, expr, unit="short", desc="", thresholds=None, color_mode="value"):
    steps = thresholds or [{"color": "green", "value": None}]
    return {"type": "stat", "title": title, "description": desc, "datasource": DS,
            "targets": targets([(expr, "")], instant=True),
            "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute",
                                                                      "steps": steps}},
                            "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": color_mode, "graphMode": "area", "justifyMode": "auto",
                        "textMode": "auto", "orientation": "auto"}}


def red_above(v):
    return [{"color": "green", "value": None}, {"color": "red", "value": v}]


def quantiles(metric, by, qs=(0.5, 0.95, 0.99), sel=PB):
    out = []
    for q in qs:
        expr = (f"histogram_quantile({q}, sum by ({by}, le) "
                f"(rate({metric}_bucket{{{sel}}}[{RI}])))")
        label = "{{" + by + "}}" if by else ""
        out.append((expr, f"{label} p{int(q * 100)}".strip()))
    return out


def dashed(regex):
    return {"matcher": {"id": "byRegexp", "options": regex},
            "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                           {"id": "custom.fillOpacity", "value": 0}]}


def build():
    L = Layout()

    # ---------------------------------------------------------------- Overview
    L.row("Overview")
    L.add(stat("Client connections", f"sum(envoy_tdspool_connections_active{{{P}}})",
               desc="Open client connections on the selected proxies (all buckets, including "
                    "those still in PRELOGIN/login)."), 4, 4)
    L.add(stat("Sessions active", f"sum(envoy_tdspool_bucket_sessions_active{{{PB}}})",
               desc="Logged-in sessions in the selected buckets."), 4, 4)
    L.add(stat("Sessions queued", f"sum(envoy_tdspool_bucket_sessions_queued{{{PB}}})",
               desc="Logins on the selected proxies waiting for a connection slot.",
               thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}]),
          4, 4)
    L.add(stat("Sessions pinned", f"sum(envoy_tdspool_bucket_sessions_pinned{{{PB}}})",
               desc="Sessions pinned to their backend connection (any reason)."), 4, 4)
    L.add(stat("Buckets on fallback quota",
               f"count(max by (bucket) (envoy_tdspool_bucket_fallback_active{{{PB}}}) > 0) or vector(0)",
               desc="Buckets where at least one proxy cannot reach Redis and admits from its "
                    "local fallback quota.", thresholds=red_above(1), color_mode="background"),
          4, 4)
    L.add(stat("Panics (range)", f"sum(increase(envoy_tdspool_panics_total{{{P}}}[$__range]))",
               desc="Go panics caught by the module's panic barrier in the dashboard's time "
                    "range. Anything above 0 is a bug.",
               thresholds=red_above(1), color_mode="background"), 4, 4)

    L.add(timeseries(
        "Sessions active per bucket vs cap",
        [(f"sum by (bucket) (envoy_tdspool_bucket_sessions_active{{{PB}}})", "{{bucket}}"),
         ('max by (bucket) (tdspool:bucket_max_connections{bucket=~"$bucket"})', "{{bucket}} cap")],
        desc="Logged-in sessions summed over the selected proxies. The dashed cap line is the "
             "bucket's max_connections (gauge envoy_tdspool_bucket_max_connections, via the "
             "recording rule in deployments/prometheus/bucket_caps.yml).",
        overrides=[dashed(".* cap$")]), 12, 8)
    L.add(timeseries(
        "Cap utilisation",
        [(f"sum by (bucket) (envoy_tdspool_bucket_sessions_active{{{PB}}}) "
          f"/ on (bucket) max by (bucket) (tdspool:bucket_max_connections)", "{{bucket}}")],
        unit="percentunit",
        desc="Sessions active ÷ max_connections (recording rule tdspool:bucket_max_connections)."), 12, 8)
    L.add(timeseries(
        "Sessions queued / pinned per bucket",
        [(f"sum by (bucket) (envoy_tdspool_bucket_sessions_queued{{{PB}}})", "{{bucket}} queued"),
         (f"sum by (bucket) (envoy_tdspool_bucket_sessions_pinned{{{PB}}})", "{{bucket}} pinned")],
        desc="Queued: logins waiting for a slot on these proxies. Pinned: sessions bound to "
             "their backend connection."), 12, 8)
    L.add(timeseries(
        "Connections and logins",
        [(f"sum(rate(envoy_tdspool_connections_total{{{P}}}[{RI}]))", "connections accepted"),
         (f"sum(rate(envoy_tdspool_bucket_login_ok_total{{{PB}}}[{RI}]))", "logins ok"),
         (f"sum(rate(envoy_tdspool_bucket_login_failed_total{{{PB}}}[{RI}]))", "logins refused by server"),
         (f"sum(rate(envoy_tdspool_bucket_sessions_total{{{PB}}}[{RI}]))", "sessions started")],
        unit="ops", desc="Per-second rates over the selected proxies and buckets."), 12, 8)

    # ---------------------------------------------------------------- Slots
    L.row("Connection slots")
    L.add(timeseries(
        "Slot requests by outcome",
        [(f"sum(rate(envoy_tdspool_bucket_slot_{o}_total{{{PB}}}[{RI}]))", o) for o in SLOT_OUTCOMES]
        + [(f"sum(rate(envoy_tdspool_bucket_slot_released_total{{{PB}}}[{RI}]))", "released")],
        unit="ops",
        desc="granted: a slot was given; timed_out: queue_timeout passed; queue_full: max_queue "
             "waiters already; refused: the coordinator said no; cancelled: the client left "
             "while queued; fallback: granted from the local fallback quota (Redis "
             "unreachable). timed_out, queue_full and refused reach the client as pool "
             "exhausted."), 12, 8)
    L.add(timeseries(
        "Slot refusals per bucket",
        [(f"sum by (bucket) (rate(envoy_tdspool_bucket_slot_timed_out_total{{{PB}}}[{RI}]) "
          f"+ rate(envoy_tdspool_bucket_slot_queue_full_total{{{PB}}}[{RI}]) "
          f"+ rate(envoy_tdspool_bucket_slot_refused_total{{{PB}}}[{RI}]))", "{{bucket}}")],
        unit="ops", desc="Logins answered with pool exhausted, per bucket."), 12, 8)
    L.add(timeseries(
        "Queue wait p50 / p99",
        quantiles("envoy_tdspool_bucket_queue_wait_ms", "bucket", (0.5, 0.99)),
        unit="ms", desc="Time from asking for a slot to the answer (granted or not)."), 8, 8)
    L.add(timeseries(
        "Fleet queue (Redis) vs local queue",
        [(f"max by (bucket) (envoy_tdspool_bucket_queue_fleet{{{PB}}})", "{{bucket}} fleet"),
         (f"sum by (bucket) (envoy_tdspool_bucket_sessions_queued{{{PB}}})", "{{bucket}} local")],
        desc="fleet: waiters across all proxies as Redis last reported (max over proxies); "
             "local: waiters on the selected proxies.", overrides=[dashed(".* local$")]), 8, 8)
    L.add(timeseries(
        "Coordinator acquires",
        [(f"sum by (bucket) (rate(envoy_tdspool_bucket_coordinator_acquires_total{{{PB}}}[{RI}]))",
          "{{bucket}}")],
        unit="ops", desc="Grants as the Redis coordinator saw them."), 8, 8)

    # ---------------------------------------------------------------- Latency
    L.row("Latency")
    L.add(timeseries(
        "Login time (PRELOGIN → LOGINACK)",
        quantiles("envoy_tdspool_bucket_login_ms", "bucket"),
        unit="ms", desc="Includes the slot wait and the backend login."), 12, 8)
    L.add(timeseries(
        "Request duration",
        quantiles("envoy_tdspool_bucket_request_duration_us", "bucket"),
        unit="µs", desc="From a client request to the end of its response."), 12, 8)
    L.add(timeseries(
        "Mean request duration",
        [(f"sum by (bucket) (rate(envoy_tdspool_bucket_request_duration_us_sum{{{PB}}}[{RI}])) "
          f"/ sum by (bucket) (rate(envoy_tdspool_bucket_request_duration_us_count{{{PB}}}[{RI}]))",
          "{{bucket}}")], unit="µs"), 12, 8)
    L.add(timeseries(
        "Responses",
        [(f"sum by (bucket) (rate(envoy_tdspool_bucket_responses_total{{{PB}}}[{RI}]))", "{{bucket}}")],
        unit="ops", desc="Complete responses per second."), 12, 8)

    # ---------------------------------------------------------------- Traffic
    L.row("Traffic")
    L.add(timeseries(
        "Bytes per bucket",
        [(f"sum by (bucket) (rate(envoy_tdspool_bucket_rx_bytes_total{{{PB}}}[{RI}]))", "{{bucket}} client → server"),
         (f"sum by (bucket) (rate(envoy_tdspool_bucket_tx_bytes_total{{{PB}}}[{RI}]))", "{{bucket}} server → client"),
         (f"sum(rate(envoy_tdspool_login_rx_bytes_total{{{P}}}[{RI}]))", "login (before routing)")],
        unit="Bps"), 12, 8)
    L.add(timeseries(
        "Client packets per bucket",
        [(f"sum by (bucket) (rate(envoy_tdspool_bucket_rx_packets_total{{{PB}}}[{RI}]))", "{{bucket}}")],
        unit="pps", desc="TDS packets from clients to servers."), 12, 8)
    L.add(timeseries(
        "Requests by type",
        [(f"sum(rate(envoy_tdspool_bucket_requests_{t}_total{{{PB}}}[{RI}]))", t) for t in REQUEST_TYPES],
        unit="reqps", stack=True,
        desc="unclassified: requests whose body could not be decoded."), 12, 8)
    L.add(timeseries(
        "Resets and lost inspection",
        [(f"sum by (bucket) (rate(envoy_tdspool_bucket_resets_total{{{PB}}}[{RI}]))", "{{bucket}} resets"),
         (f"sum by (bucket) (rate(envoy_tdspool_bucket_inspect_stopped_total{{{PB}}}[{RI}]))",
          "{{bucket}} inspection stopped")],
        unit="ops",
        desc="resets: RESETCONNECTION acknowledged (a driver pool reusing a session). "
             "inspection stopped: sessions whose stream tdspool could no longer follow."), 12, 8)

    # ---------------------------------------------------------------- Pinning
    L.row("Pinning")
    L.add(timeseries(
        "Pinned sessions by reason",
        [(f"sum(envoy_tdspool_bucket_pinned_{r}{{{PB}}})", r) for r in PIN_REASONS],
        stack=True, desc="A session can be pinned for several reasons at once."), 12, 8)
    L.add(timeseries(
        "Pin events by reason",
        [(f"sum(rate(envoy_tdspool_bucket_pin_{r}_total{{{PB}}}[{RI}]))", r) for r in PIN_REASONS],
        unit="ops"), 12, 8)
    L.add(timeseries(
        "Pinned share of active sessions",
        [(f"sum by (bucket) (envoy_tdspool_bucket_sessions_pinned{{{PB}}}) "
          f"/ sum by (bucket) (envoy_tdspool_bucket_sessions_active{{{PB}}})", "{{bucket}}")],
        unit="percentunit"), 24, 7)

    # ---------------------------------------------------------------- Errors
    L.row("Errors")
    L.add(timeseries(
        "Errors sent to clients by kind",
        [(f"sum(rate(envoy_tdspool_client_errors_{k}_total{{{P}}}[{RI}]))", k) for k in CLIENT_ERROR_KINDS],
        unit="ops", stack=True), 12, 8)
    L.add(timeseries(
        "Server errors and refused logins per bucket",
        [(f"sum by (bucket) (rate(envoy_tdspool_bucket_server_errors_total{{{PB}}}[{RI}]))", "{{bucket}} ERROR tokens"),
         (f"sum by (bucket) (rate(envoy_tdspool_bucket_login_failed_total{{{PB}}}[{RI}]))", "{{bucket}} login failed")],
        unit="ops", desc="ERROR tokens returned by SQL Server (any severity), and logins the "
                         "server refused."), 12, 8)
    L.add(timeseries(
        "Backend unavailable per bucket",
        [(f"sum by (bucket) (rate(envoy_tdspool_bucket_backend_unavailable_total{{{PB}}}[{RI}]))", "{{bucket}}")],
        unit="ops", desc="No healthy host, or no PRELOGIN reply within backend_handshake_timeout."),
        8, 8)
    L.add(timeseries(
        "Proxy-side refusals",
        [(f"sum(rate(envoy_tdspool_protocol_errors_total{{{P}}}[{RI}]))", "protocol errors"),
         (f"sum(rate(envoy_tdspool_no_route_total{{{P}}}[{RI}]))", "no route"),
         (f"sum(rate(envoy_tdspool_route_failed_total{{{P}}}[{RI}]))", "route failed (Envoy)"),
         (f"sum(rate(envoy_tdspool_refused_policy_total{{{P}}}[{RI}]))", "refused by policy"),
         (f"sum(rate(envoy_tdspool_login_timeouts_total{{{P}}}[{RI}]))", "login timeouts"),
         (f"sum(rate(envoy_tdspool_slot_released_on_destroy_total{{{P}}}[{RI}]))", "slot released on destroy")],
        unit="ops"), 8, 8)
    L.add(timeseries(
        "Panics",
        [(f"sum by (instance) (increase(envoy_tdspool_panics_total{{{P}}}[{RI}]))", "{{instance}} filter"),
         (f"sum by (instance) (increase(envoy_tdspool_coordinator_panics_total{{{P}}}[{RI}]))",
          "{{instance}} coordinator")],
        desc="Go panics caught by the panic barriers: filter = at the Envoy boundary (the "
             "connection is closed); coordinator = in a Redis coordinator goroutine (that slot "
             "request or renewal fails). Should always be 0.",
        overrides=[{"matcher": {"id": "byFrameRefID", "options": "A"},
                    "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}]},
                   {"matcher": {"id": "byFrameRefID", "options": "B"},
                    "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "dark-red"}}]}]),
        8, 8)
    L.add(timeseries(
        "Envoy cluster health (healthy / total hosts)",
        [(f'sum by (envoy_cluster_name) (envoy_cluster_membership_healthy{{{P},envoy_cluster_name!~"envoy_admin|tdspool_unrouted"}})',
          "{{envoy_cluster_name}} healthy"),
         (f'sum by (envoy_cluster_name) (envoy_cluster_membership_total{{{P},envoy_cluster_name!~"envoy_admin|tdspool_unrouted"}})',
          "{{envoy_cluster_name}} total")],
        desc="Summed over the selected proxies. tdspool refuses logins to a bucket whose "
             "cluster has no healthy host.", overrides=[dashed(".* total$")]), 24, 7)

    # ---------------------------------------------------------------- Redis
    L.row("Redis coordination")
    L.add(timeseries(
        "Redis calls / errors",
        [(f"sum by (instance) (rate(envoy_tdspool_redis_calls_total{{{P}}}[{RI}]))", "{{instance}} calls"),
         (f"sum by (instance) (rate(envoy_tdspool_redis_errors_total{{{P}}}[{RI}]))", "{{instance}} errors")],
        unit="ops"), 8, 8)
    L.add(timeseries(
        "Redis latency",
        quantiles("envoy_tdspool_redis_latency_us", "instance", (0.5, 0.99), sel=P),
        unit="µs"), 8, 8)
    L.add(timeseries(
        "Fallback quota active",
        [(f"max by (bucket) (envoy_tdspool_bucket_fallback_active{{{PB}}})", "{{bucket}}")],
        desc="1 while a proxy cannot reach Redis for the bucket and admits logins from its "
             "local fallback quota.", min0=True), 8, 8)
    L.add(timeseries(
        "Leases renewed / expired",
        [(f"sum by (bucket) (rate(envoy_tdspool_bucket_leases_renewed_total{{{PB}}}[{RI}]))", "{{bucket}} renewed"),
         (f"sum by (bucket) (rate(envoy_tdspool_bucket_leases_expired_total{{{PB}}}[{RI}]))", "{{bucket}} expired")],
        unit="ops", desc="Expired leases: slots of a proxy that stopped renewing were reclaimed."),
        24, 7)

    # ---------------------------------------------------------------- TLS
    L.row("TLS")
    L.add(timeseries(
        "Sessions by encryption mode",
        [(f"sum(rate(envoy_tdspool_tls_{m}_total{{{P}}}[{RI}]))", label) for m, label in TLS_MODES],
        unit="ops", stack=False), 16, 8)
    pie = {"type": "piechart", "title": "Encryption mode share (range)", "datasource": DS,
           "description": "Sessions started in the dashboard's time range by encryption mode.",
           "targets": targets([(f"sum(increase(envoy_tdspool_tls_{m}_total{{{P}}}[$__range]))", label)
                               for m, label in TLS_MODES[:4]], instant=True),
           "fieldConfig": {"defaults": {"unit": "short"}, "overrides": []},
           "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                       "pieType": "donut", "legend": {"displayMode": "table", "placement": "right",
                                                      "values": ["value", "percent"], "showLegend": True},
                       "tooltip": {"mode": "single"}}}
    L.add(pie, 8, 8)

    def query_var(name, label, query, include_all=True, multi=True):
        return {"name": name, "label": label, "type": "query", "datasource": DS,
                "query": {"query": query, "refId": f"{name}-var", "qryType": 1},
                "definition": query, "refresh": 2, "sort": 1, "multi": multi,
                "includeAll": include_all, "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "options": [], "hide": 0, "regex": "", "skipUrlSync": False}

    templating = [
        {"name": "DS_PROMETHEUS", "label": "Datasource", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1,
         "regex": "", "skipUrlSync": False},
        query_var("job", "Fleet (job)", "label_values(envoy_tdspool_connections_active, job)"),
        query_var("instance", "Proxy", 'label_values(envoy_tdspool_connections_active{job=~"$job"}, instance)'),
        query_var("bucket", "Bucket",
                  'label_values(envoy_tdspool_bucket_sessions_active{job=~"$job",instance=~"$instance"}, bucket)'),
    ]

    return {
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.4.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
            {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
            {"type": "panel", "id": "piechart", "name": "Pie chart", "version": ""},
        ],
        "uid": "tdspool-overview",
        "title": "tdspool — SQL Server connection pooling",
        "description": "tdspool (Envoy dynamic-module TDS pooling proxy): sessions vs caps, slot "
                       "queueing, latency, traffic, pinning, errors, Redis coordination, TLS.",
        "tags": ["tdspool", "envoy", "sqlserver"],
        "editable": True,
        "graphTooltip": 1,
        "timezone": "",
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "schemaVersion": 39,
        "version": 1,
        "links": [],
        "annotations": {"list": [
            {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
             "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
             "name": "Annotations & Alerts", "type": "dashboard"},
            {"name": "tdspool panics", "datasource": DS, "enable": True, "hide": False,
             "iconColor": "red",
             "expr": f"sum(increase(envoy_tdspool_panics_total{{{P}}}[1m])) > 0",
             "step": "1m", "titleFormat": "tdspool panic", "textFormat": "{{value}} panic(s)"},
        ]},
        "templating": {"list": templating},
        "panels": L.panels,
    }


def main():
    out = os.path.join(HERE, "tdspool-dashboard.json")
    text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
    if sys.argv[1:] == ["--check"]:
        with open(out, encoding="utf-8") as f:
            if f.read() != text:
                sys.exit(f"{out} is not what build_dashboard.py makes: run "
                         "`python3 deployments/grafana/build_dashboard.py` and commit the JSON")
        print("tdspool-dashboard.json is what build_dashboard.py makes")
        return
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
