// Package grafana builds the tdspool Grafana dashboard (tdspool-dashboard.json) with the Grafana
// Foundation SDK. The JSON is the deliverable and is committed; this code is how it is made,
// so that the panels stay uniform. After editing, run `go generate ./deployments/grafana`; a
// test fails while the committed JSON differs from what Build makes, and the integration test
// TestDashboardMatchesLiveStats checks every metric name against a live Envoy (check_metrics.py).
//
// Conventions: the datasource is the template variable ${DS_PROMETHEUS}, so the dashboard
// imports into any Grafana with a Prometheus datasource; every query filters on the variables
// job (one job = one fleet), instance and bucket; per-proxy gauges are summed over the selected
// proxies, fleet-wide gauges (queue_fleet, fallback_active) are max()ed, since every proxy
// reports the same fleet value.
package grafana

//go:generate go run ./gendashboard

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/piechart"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

const (
	p  = `job=~"$job",instance=~"$instance"` // proxy selector
	pb = p + `,bucket=~"$bucket"`            // proxy + bucket selector
	ri = "$__rate_interval"
)

var (
	pinReasons  = []string{"transaction", "prepared", "temp_table", "set_option", "cursor", "bulk_load", "app_role", "unparsed", "mars", "applock", "session_context"}
	requestKind = []string{"sql_batch", "rpc", "attention", "transaction_manager", "bulk_load", "other", "unclassified"}
	errorKinds  = []string{"pool_exhausted", "no_route", "backend_unavailable", "policy", "protocol",
		"bucket_paused", "bucket_draining", "bucket_disabled", "killed"}
	slotResults = []string{"granted", "timed_out", "queue_full", "refused", "cancelled", "fallback"}
	tlsModes    = [][2]string{{"none", "none (plaintext)"}, {"login_only", "TDS 7 login-only"},
		{"full", "TDS 7 full"}, {"strict", "TDS 8 strict"}, {"failed", "handshake failed"}}
)

func ds() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${DS_PROMETHEUS}")}
}

// q is one query: a PromQL expression and its legend.
type q struct{ expr, legend string }

func query(i int, x q) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Datasource(ds()).Expr(x.expr).LegendFormat(x.legend).
		RefId(string(rune('A' + i))).EditorMode(prometheus.QueryEditorModeCode)
}

// panel is what every timeseries panel states; the rest are the options some of them add.
type panel struct {
	title, desc, unit string
	w, h              uint32
	queries           []q
	stack             bool
	dashed            string // series whose legend matches this regexp are drawn dashed, unfilled
	colors            []string
}

func (x panel) build() *timeseries.PanelBuilder {
	stacking, fill := common.StackingModeNone, 10.0
	if x.stack {
		stacking, fill = common.StackingModeNormal, 35
	}
	unit := x.unit
	if unit == "" {
		unit = "short"
	}
	b := timeseries.NewPanelBuilder().Title(x.title).Description(x.desc).Datasource(ds()).
		Span(x.w).Height(x.h).Unit(unit).Min(0).LineWidth(1).FillOpacity(fill).
		ShowPoints(common.VisibilityModeNever).
		Stacking(common.NewStackingConfigBuilder().Mode(stacking).Group("A")).
		Legend(common.NewVizLegendOptionsBuilder().DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementBottom).ShowLegend(true).Calcs([]string{"mean", "max", "lastNotNull"})).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
	for i, x := range x.queries {
		b.WithTarget(query(i, x))
	}
	if x.dashed != "" {
		b.OverrideByRegexp(x.dashed, []dashboard.DynamicConfigValue{
			{Id: "custom.lineStyle", Value: map[string]any{"fill": "dash", "dash": []int{10, 10}}},
			{Id: "custom.fillOpacity", Value: 0}})
	}
	for i, c := range x.colors {
		b.OverrideByQuery(string(rune('A'+i)), []dashboard.DynamicConfigValue{
			{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": c}}})
	}
	return b
}

// each makes one query per name, expr and legend formatted with it.
func each(names []string, expr string) []q {
	out := make([]q, len(names))
	for i, n := range names {
		out[i] = q{fmt.Sprintf(expr, n), n}
	}
	return out
}

func quantiles(metric, by, sel string, qs ...float64) []q {
	var out []q
	for _, v := range qs {
		legend := fmt.Sprintf("p%d", int(v*100))
		if by != "" {
			legend = "{{" + by + "}} " + legend
		}
		out = append(out, q{fmt.Sprintf("histogram_quantile(%g, sum by (%s, le) (rate(%s_bucket{%s}[%s])))", v, by, metric, sel, ri), legend})
	}
	return out
}

func statPanel(title, desc, expr string, alertAt float64) *stat.PanelBuilder {
	steps := []dashboard.Threshold{{Color: "green"}}
	color := common.BigValueColorModeValue
	if alertAt > 0 {
		steps = append(steps, dashboard.Threshold{Color: "red", Value: cog.ToPtr(alertAt)})
		color = common.BigValueColorModeBackground
	}
	return stat.NewPanelBuilder().Title(title).Description(desc).Datasource(ds()).Span(4).Height(4).Unit("short").
		WithTarget(query(0, q{expr, ""}).Instant()).ColorMode(color).GraphMode(common.BigValueGraphModeArea).
		Thresholds(dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(steps)).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false)).
		JustifyMode(common.BigValueJustifyModeAuto).TextMode(common.BigValueTextModeAuto).Orientation(common.VizOrientationAuto)
}

func variable(name, label, query string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).Label(label).Datasource(ds()).Definition(query).
		Query(dashboard.StringOrMap{Map: map[string]any{"query": query, "refId": name + "-var", "qryType": 1}}).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(true).IncludeAll(true).AllValue(".*")
}

// Build returns the dashboard's JSON, as committed in tdspool-dashboard.json.
func Build() ([]byte, error) {
	b := dashboard.NewDashboardBuilder("tdspool — SQL Server connection pooling").Uid("tdspool-overview").
		Description("tdspool (Envoy dynamic-module TDS pooling proxy): sessions vs caps, slot queueing, latency, "+
			"traffic, pinning, errors, Redis coordination, TLS.").
		Tags([]string{"tdspool", "envoy", "sqlserver"}).Editable().Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Refresh("30s").Time("now-3h", "now").
		WithVariable(dashboard.NewDatasourceVariableBuilder("DS_PROMETHEUS").Label("Datasource").Type("prometheus")).
		WithVariable(variable("job", "Fleet (job)", "label_values(envoy_tdspool_connections_active, job)")).
		WithVariable(variable("instance", "Proxy", `label_values(envoy_tdspool_connections_active{job=~"$job"}, instance)`)).
		WithVariable(variable("bucket", "Bucket", `label_values(envoy_tdspool_bucket_sessions_active{job=~"$job",instance=~"$instance"}, bucket)`)).
		Annotation(dashboard.NewAnnotationQueryBuilder().Name("tdspool panics").Datasource(ds()).Enable(true).
			IconColor("red").Expr("sum(increase(envoy_tdspool_panics_total{" + p + "}[1m]) + increase(envoy_tdspool_coordinator_panics_total{" + p + "}[1m])) > 0").
			Step("1m").TitleFormat("tdspool panic").TextFormat("{{value}} panic(s)"))
	row := func(title string, panels ...cog.Builder[dashboard.Panel]) {
		b.WithRow(dashboard.NewRowBuilder(title))
		for _, x := range panels {
			b.WithPanel(x)
		}
	}

	row("Overview",
		statPanel("Client connections", "Open client connections on the selected proxies (all buckets, including those still in PRELOGIN/login).",
			"sum(envoy_tdspool_connections_active{"+p+"})", 0),
		statPanel("Sessions active", "Logged-in sessions in the selected buckets.", "sum(envoy_tdspool_bucket_sessions_active{"+pb+"})", 0),
		statPanel("Sessions queued", "Logins on the selected proxies waiting for a connection slot.",
			"sum(envoy_tdspool_bucket_sessions_queued{"+pb+"})", 0),
		statPanel("Sessions pinned", "Sessions pinned to their backend connection (any reason).", "sum(envoy_tdspool_bucket_sessions_pinned{"+pb+"})", 0),
		statPanel("Buckets on fallback quota", "Buckets where at least one proxy cannot reach Redis and admits from its local fallback quota.",
			"count(max by (bucket) (envoy_tdspool_bucket_fallback_active{"+pb+"}) > 0) or vector(0)", 1),
		statPanel("Panics (range)", "Go panics caught by the module's panic barriers (filter and coordinator) in the dashboard's time range. Anything above 0 is a bug.",
			"sum(increase(envoy_tdspool_panics_total{"+p+"}[$__range])) + sum(increase(envoy_tdspool_coordinator_panics_total{"+p+"}[$__range]))", 1),
		panel{title: "Sessions active per bucket vs cap", w: 12, h: 8, dashed: ".* cap$",
			desc: "Logged-in sessions summed over the selected proxies. The dashed cap line is the bucket's max_connections " +
				"(gauge envoy_tdspool_bucket_max_connections, via the recording rule in deployments/prometheus/bucket_caps.yml).",
			queries: []q{{"sum by (bucket) (envoy_tdspool_bucket_sessions_active{" + pb + "})", "{{bucket}}"},
				{`max by (bucket) (tdspool:bucket_max_connections{bucket=~"$bucket"})`, "{{bucket}} cap"}}}.build(),
		panel{title: "Cap utilisation", unit: "percentunit", w: 12, h: 8,
			desc:    "Sessions active ÷ max_connections (recording rule tdspool:bucket_max_connections).",
			queries: []q{{"sum by (bucket) (envoy_tdspool_bucket_sessions_active{" + pb + "}) / on (bucket) max by (bucket) (tdspool:bucket_max_connections)", "{{bucket}}"}}}.build(),
		panel{title: "Sessions queued / pinned per bucket", w: 12, h: 8,
			desc: "Queued: logins waiting for a slot on these proxies. Pinned: sessions bound to their backend connection.",
			queries: []q{{"sum by (bucket) (envoy_tdspool_bucket_sessions_queued{" + pb + "})", "{{bucket}} queued"},
				{"sum by (bucket) (envoy_tdspool_bucket_sessions_pinned{" + pb + "})", "{{bucket}} pinned"}}}.build(),
		panel{title: "Connections and logins", unit: "ops", w: 12, h: 8, desc: "Per-second rates over the selected proxies and buckets.",
			queries: []q{{"sum(rate(envoy_tdspool_connections_total{" + p + "}[" + ri + "]))", "connections accepted"},
				{"sum(rate(envoy_tdspool_bucket_login_ok_total{" + pb + "}[" + ri + "]))", "logins ok"},
				{"sum(rate(envoy_tdspool_bucket_login_failed_total{" + pb + "}[" + ri + "]))", "logins refused by server"},
				{"sum(rate(envoy_tdspool_bucket_sessions_total{" + pb + "}[" + ri + "]))", "sessions started"}}}.build(),
	)

	row("Connection slots",
		panel{title: "Slot requests by outcome", unit: "ops", w: 12, h: 8,
			desc: "granted: a slot was given; timed_out: queue_timeout passed; queue_full: max_queue waiters already; refused: " +
				"the coordinator said no; cancelled: the client left while queued; fallback: granted from the local fallback " +
				"quota (Redis unreachable). timed_out, queue_full and refused reach the client as pool exhausted.",
			queries: append(each(slotResults, "sum(rate(envoy_tdspool_bucket_slot_%s_total{"+pb+"}["+ri+"]))"),
				q{"sum(rate(envoy_tdspool_bucket_slot_released_total{" + pb + "}[" + ri + "]))", "released"})}.build(),
		panel{title: "Slot refusals per bucket", unit: "ops", w: 12, h: 8, desc: "Logins answered with pool exhausted, per bucket.",
			queries: []q{{"sum by (bucket) (rate(envoy_tdspool_bucket_slot_timed_out_total{" + pb + "}[" + ri + "]) + rate(envoy_tdspool_bucket_slot_queue_full_total{" + pb + "}[" + ri + "]) + rate(envoy_tdspool_bucket_slot_refused_total{" + pb + "}[" + ri + "]))", "{{bucket}}"}}}.build(),
		panel{title: "Queue wait p50 / p99", unit: "ms", w: 8, h: 8, desc: "Time from asking for a slot to the answer (granted or not).",
			queries: quantiles("envoy_tdspool_bucket_queue_wait_ms", "bucket", pb, 0.5, 0.99)}.build(),
		panel{title: "Fleet queue (Redis) vs local queue", w: 8, h: 8, dashed: ".* local$",
			desc:    "fleet: waiters across all proxies as Redis last reported (max over proxies); local: waiters on the selected proxies.",
			queries: []q{{"max by (bucket) (envoy_tdspool_bucket_queue_fleet{" + pb + "})", "{{bucket}} fleet"}, {"sum by (bucket) (envoy_tdspool_bucket_sessions_queued{" + pb + "})", "{{bucket}} local"}}}.build(),
		panel{title: "Coordinator acquires", unit: "ops", w: 8, h: 8, desc: "Grants as the Redis coordinator saw them.",
			queries: []q{{"sum by (bucket) (rate(envoy_tdspool_bucket_coordinator_acquires_total{" + pb + "}[" + ri + "]))", "{{bucket}}"}}}.build(),
	)

	row("Fleet control",
		panel{title: "Bucket state", w: 12, h: 7,
			desc: "As set by an operator through Redis, max over the selected proxies: 0 serving, 1 paused (logins wait), " +
				"2 draining (no new logins, sessions finish), 3 disabled (logins refused).",
			queries: []q{{"max by (bucket) (envoy_tdspool_bucket_state{" + pb + "})", "{{bucket}}"}}}.build(),
		panel{title: "Sessions killed by an operator", unit: "ops", w: 12, h: 7,
			desc:    "Sessions whose lease an operator killed; the client got error 596.",
			queries: []q{{"sum by (bucket) (rate(envoy_tdspool_bucket_sessions_killed_total{" + pb + "}[" + ri + "]))", "{{bucket}}"}}}.build(),
		panel{title: "Sessions closed by Envoy drains", unit: "ops", w: 24, h: 7,
			desc: "Hot restart, /drain_listeners or a listener update: sessions closed when their transaction ended, " +
				"and those still open (idle, pinned or busy) at timeouts.drain_timeout.",
			queries: []q{{"sum by (instance) (rate(envoy_tdspool_drain_sessions_closed_total{" + p + "}[" + ri + "]))", "{{instance}} transaction ended"},
				{"sum by (instance) (rate(envoy_tdspool_drain_sessions_timed_out_total{" + p + "}[" + ri + "]))", "{{instance}} drain timeout"}}}.build(),
	)

	row("Latency",
		panel{title: "Login time (PRELOGIN → LOGINACK)", unit: "ms", w: 12, h: 8, desc: "Includes the slot wait and the backend login.",
			queries: quantiles("envoy_tdspool_bucket_login_ms", "bucket", pb, 0.5, 0.95, 0.99)}.build(),
		panel{title: "Request duration", unit: "µs", w: 12, h: 8, desc: "From a client request to the end of its response.",
			queries: quantiles("envoy_tdspool_bucket_request_duration_us", "bucket", pb, 0.5, 0.95, 0.99)}.build(),
		panel{title: "Mean request duration", unit: "µs", w: 12, h: 8,
			queries: []q{{"sum by (bucket) (rate(envoy_tdspool_bucket_request_duration_us_sum{" + pb + "}[" + ri + "])) / sum by (bucket) (rate(envoy_tdspool_bucket_request_duration_us_count{" + pb + "}[" + ri + "]))", "{{bucket}}"}}}.build(),
		panel{title: "Responses", unit: "ops", w: 12, h: 8, desc: "Complete responses per second.",
			queries: []q{{"sum by (bucket) (rate(envoy_tdspool_bucket_responses_total{" + pb + "}[" + ri + "]))", "{{bucket}}"}}}.build(),
	)

	row("Traffic",
		panel{title: "Bytes per bucket", unit: "Bps", w: 12, h: 8,
			queries: []q{{"sum by (bucket) (rate(envoy_tdspool_bucket_rx_bytes_total{" + pb + "}[" + ri + "]))", "{{bucket}} client → server"},
				{"sum by (bucket) (rate(envoy_tdspool_bucket_tx_bytes_total{" + pb + "}[" + ri + "]))", "{{bucket}} server → client"},
				{"sum(rate(envoy_tdspool_login_rx_bytes_total{" + p + "}[" + ri + "]))", "login (before routing)"}}}.build(),
		panel{title: "Client packets per bucket", unit: "pps", w: 12, h: 8, desc: "TDS packets from clients to servers.",
			queries: []q{{"sum by (bucket) (rate(envoy_tdspool_bucket_rx_packets_total{" + pb + "}[" + ri + "]))", "{{bucket}}"}}}.build(),
		panel{title: "Requests by type", unit: "reqps", w: 12, h: 8, stack: true, desc: "unclassified: requests whose body could not be decoded.",
			queries: each(requestKind, "sum(rate(envoy_tdspool_bucket_requests_%s_total{"+pb+"}["+ri+"]))")}.build(),
		panel{title: "Resets and lost inspection", unit: "ops", w: 12, h: 8,
			desc: "resets: RESETCONNECTION acknowledged (a driver pool reusing a session). inspection stopped: sessions whose stream tdspool could no longer follow.",
			queries: []q{{"sum by (bucket) (rate(envoy_tdspool_bucket_resets_total{" + pb + "}[" + ri + "]))", "{{bucket}} resets"},
				{"sum by (bucket) (rate(envoy_tdspool_bucket_inspect_stopped_total{" + pb + "}[" + ri + "]))", "{{bucket}} inspection stopped"}}}.build(),
	)

	row("Session pool",
		panel{title: "Pooled backends per bucket", w: 12, h: 8,
			desc: "Backend sessions held by the pool of a bucket in pool mode SESSION: idle ones wait for the next client " +
				"of their login, active ones serve a client. Both hold a slot.",
			queries: []q{{"sum by (bucket) (envoy_tdspool_bucket_pool_idle{" + pb + "})", "{{bucket}} idle"},
				{"sum by (bucket) (envoy_tdspool_bucket_pool_active{" + pb + "})", "{{bucket}} active"}}}.build(),
		panel{title: "Pool activity", unit: "ops", w: 12, h: 8,
			desc: "borrowed: a client got an idle backend; logins saved: its reset succeeded, so no backend login happened; " +
				"created: real backend logins whose backend joined the pool; evictions: idle backends closed to free a slot " +
				"for a waiter; closed: backends the pool closed (limits, taints, deaths, evictions); reset failures: reused " +
				"backends that did not acknowledge their reset; re-logins: failed resets with no other idle backend, replaced " +
				"by a backend login the client never saw; warmed / warm-up failures: min_idle logins with the warm-up " +
				"credentials that joined the pool, and those that failed (retried with a growing pause); return waits: " +
				"logins that found every backend of their login lent and waited (up to 10 ms) for one to come back.",
			queries: []q{{"sum(rate(envoy_tdspool_bucket_pool_borrowed_total{" + pb + "}[" + ri + "]))", "borrowed"},
				{"sum(rate(envoy_tdspool_bucket_pool_logins_saved_total{" + pb + "}[" + ri + "]))", "logins saved"},
				{"sum(rate(envoy_tdspool_bucket_pool_created_total{" + pb + "}[" + ri + "]))", "created"},
				{"sum(rate(envoy_tdspool_bucket_pool_evictions_total{" + pb + "}[" + ri + "]))", "evictions"},
				{"sum(rate(envoy_tdspool_bucket_pool_closed_total{" + pb + "}[" + ri + "]))", "closed"},
				{"sum(rate(envoy_tdspool_bucket_pool_reset_failures_total{" + pb + "}[" + ri + "]))", "reset failures"},
				{"sum(rate(envoy_tdspool_bucket_pool_relogins_total{" + pb + "}[" + ri + "]))", "re-logins"},
				{"sum(rate(envoy_tdspool_bucket_pool_warmed_total{" + pb + "}[" + ri + "]))", "warmed"},
				{"sum(rate(envoy_tdspool_bucket_pool_warmup_failures_total{" + pb + "}[" + ri + "]))", "warm-up failures"},
				{"sum(rate(envoy_tdspool_bucket_pool_return_waits_total{" + pb + "}[" + ri + "]))", "return waits"}}}.build(),
		panel{title: "Pooled keys per bucket", w: 12, h: 8,
			desc: "Distinct logins (user, database, app name, language, TDS version, options...) with at least one " +
				"pooled backend. Many keys with one backend each means few logins are shared: idle backends of one " +
				"key cannot serve another. Per-key counts are not exported (one series per login would explode).",
			queries: []q{{"sum by (bucket) (envoy_tdspool_bucket_pool_keys{" + pb + "})", "{{bucket}}"}}}.build(),
		panel{title: "Pool borrow wait p50 / p99", unit: "µs", w: 12, h: 8,
			desc: "Logins answered from the pool: from the client's connection to its warm backend being lent " +
				"(the client's own PRELOGIN/TLS/LOGIN7 round trips included). Real logins are in Login time.",
			queries: quantiles("envoy_tdspool_bucket_pool_borrow_wait_us", "bucket", pb, 0.5, 0.99)}.build(),
	)

	row("Transaction pool",
		panel{title: "Sessions holding a backend", w: 12, h: 8,
			desc: "Pool mode TRANSACTION: client sessions bound to a borrowed backend now (the rest hold none), against " +
				"the bucket's logged-in sessions.",
			queries: []q{{"sum by (bucket) (envoy_tdspool_bucket_tx_bound{" + pb + "})", "{{bucket}} bound"}}}.build(),
		panel{title: "Borrow wait p50 / p99", unit: "µs", w: 12, h: 8,
			desc:    "Pool mode TRANSACTION: from a request's start to its backend (an idle one, one handed over, or a new login).",
			queries: quantiles("envoy_tdspool_bucket_tx_borrow_wait_us", "bucket", pb, 0.5, 0.99)}.build(),
	)

	row("Pinning",
		panel{title: "Pinned sessions by reason", w: 12, h: 8, stack: true, desc: "A session can be pinned for several reasons at once.",
			queries: each(pinReasons, "sum(envoy_tdspool_bucket_pinned_%s{"+pb+"})")}.build(),
		panel{title: "Pin events by reason", unit: "ops", w: 12, h: 8,
			queries: each(pinReasons, "sum(rate(envoy_tdspool_bucket_pin_%s_total{"+pb+"}["+ri+"]))")}.build(),
		panel{title: "Pinned share of active sessions", unit: "percentunit", w: 24, h: 7,
			queries: []q{{"sum by (bucket) (envoy_tdspool_bucket_sessions_pinned{" + pb + "}) / sum by (bucket) (envoy_tdspool_bucket_sessions_active{" + pb + "})", "{{bucket}}"}}}.build(),
	)

	row("Errors",
		panel{title: "Errors sent to clients by kind", unit: "ops", w: 12, h: 8, stack: true,
			queries: each(errorKinds, "sum(rate(envoy_tdspool_client_errors_%s_total{"+p+"}["+ri+"]))")}.build(),
		panel{title: "Server errors and refused logins per bucket", unit: "ops", w: 12, h: 8,
			desc: "ERROR tokens returned by SQL Server (any severity), and logins the server refused.",
			queries: []q{{"sum by (bucket) (rate(envoy_tdspool_bucket_server_errors_total{" + pb + "}[" + ri + "]))", "{{bucket}} ERROR tokens"},
				{"sum by (bucket) (rate(envoy_tdspool_bucket_login_failed_total{" + pb + "}[" + ri + "]))", "{{bucket}} login failed"}}}.build(),
		panel{title: "Backend unavailable per bucket", unit: "ops", w: 8, h: 8, desc: "No healthy host, or no PRELOGIN reply within backend_handshake_timeout.",
			queries: []q{{"sum by (bucket) (rate(envoy_tdspool_bucket_backend_unavailable_total{" + pb + "}[" + ri + "]))", "{{bucket}}"}}}.build(),
		panel{title: "Proxy-side refusals", unit: "ops", w: 8, h: 8,
			queries: []q{{"sum(rate(envoy_tdspool_protocol_errors_total{" + p + "}[" + ri + "]))", "protocol errors"},
				{"sum(rate(envoy_tdspool_no_route_total{" + p + "}[" + ri + "]))", "no route"},
				{"sum(rate(envoy_tdspool_route_failed_total{" + p + "}[" + ri + "]))", "route failed (Envoy)"},
				{"sum(rate(envoy_tdspool_refused_policy_total{" + p + "}[" + ri + "]))", "refused by policy"},
				{"sum(rate(envoy_tdspool_login_timeouts_total{" + p + "}[" + ri + "]))", "login timeouts"},
				{"sum(rate(envoy_tdspool_slot_released_on_destroy_total{" + p + "}[" + ri + "]))", "slot released on destroy"}}}.build(),
		panel{title: "Panics", w: 8, h: 8, colors: []string{"red", "dark-red"},
			desc: "Go panics caught by the panic barriers: filter = at the Envoy boundary (the connection is closed); coordinator = " +
				"in a Redis coordinator goroutine (that slot request or renewal fails). Should always be 0.",
			queries: []q{{"sum by (instance) (increase(envoy_tdspool_panics_total{" + p + "}[" + ri + "]))", "{{instance}} filter"},
				{"sum by (instance) (increase(envoy_tdspool_coordinator_panics_total{" + p + "}[" + ri + "]))", "{{instance}} coordinator"}}}.build(),
		panel{title: "Envoy cluster health (healthy / total hosts)", w: 24, h: 7, dashed: ".* total$",
			desc: "Summed over the selected proxies. tdspool refuses logins to a bucket whose cluster has no healthy host.",
			queries: []q{{`sum by (envoy_cluster_name) (envoy_cluster_membership_healthy{` + p + `,envoy_cluster_name!~"envoy_admin|tdspool_unrouted"})`, "{{envoy_cluster_name}} healthy"},
				{`sum by (envoy_cluster_name) (envoy_cluster_membership_total{` + p + `,envoy_cluster_name!~"envoy_admin|tdspool_unrouted"})`, "{{envoy_cluster_name}} total"}}}.build(),
	)

	row("Redis coordination",
		panel{title: "Redis calls / errors", unit: "ops", w: 8, h: 8,
			queries: []q{{"sum by (instance) (rate(envoy_tdspool_redis_calls_total{" + p + "}[" + ri + "]))", "{{instance}} calls"},
				{"sum by (instance) (rate(envoy_tdspool_redis_errors_total{" + p + "}[" + ri + "]))", "{{instance}} errors"}}}.build(),
		panel{title: "Redis latency", unit: "µs", w: 8, h: 8, queries: quantiles("envoy_tdspool_redis_latency_us", "instance", p, 0.5, 0.99)}.build(),
		panel{title: "Fallback quota active", w: 8, h: 8,
			desc:    "1 while a proxy cannot reach Redis for the bucket and admits logins from its local fallback quota.",
			queries: []q{{"max by (bucket) (envoy_tdspool_bucket_fallback_active{" + pb + "})", "{{bucket}}"}}}.build(),
		panel{title: "Leases renewed / expired", unit: "ops", w: 24, h: 7, desc: "Expired leases: slots of a proxy that stopped renewing were reclaimed.",
			queries: []q{{"sum by (bucket) (rate(envoy_tdspool_bucket_leases_renewed_total{" + pb + "}[" + ri + "]))", "{{bucket}} renewed"},
				{"sum by (bucket) (rate(envoy_tdspool_bucket_leases_expired_total{" + pb + "}[" + ri + "]))", "{{bucket}} expired"}}}.build(),
	)

	var tls, share []q
	for _, m := range tlsModes {
		tls = append(tls, q{"sum(rate(envoy_tdspool_tls_" + m[0] + "_total{" + p + "}[" + ri + "]))", m[1]})
		if m[0] != "failed" {
			share = append(share, q{"sum(increase(envoy_tdspool_tls_" + m[0] + "_total{" + p + "}[$__range]))", m[1]})
		}
	}
	pie := piechart.NewPanelBuilder().Title("Encryption mode share (range)").Datasource(ds()).Span(8).Height(8).Unit("short").
		Description("Sessions started in the dashboard's time range by encryption mode.").PieType(piechart.PieChartTypeDonut).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false)).
		Legend(piechart.NewPieChartLegendOptionsBuilder().DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementRight).ShowLegend(true).Values([]piechart.PieChartLegendValues{
			piechart.PieChartLegendValuesValue, piechart.PieChartLegendValuesPercent}))
	for i, x := range share {
		pie.WithTarget(query(i, x).Instant())
	}
	row("TLS", panel{title: "Sessions by encryption mode", unit: "ops", w: 16, h: 8, queries: tls}.build(), pie)

	d, err := b.Build()
	if err != nil {
		return nil, err
	}
	for i, x := range d.Panels { // ids in grid order, as Grafana numbers them
		if x.Panel != nil {
			x.Panel.Id = cog.ToPtr(uint32(i + 1))
		} else {
			x.RowPanel.Id = uint32(i + 1)
		}
	}
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
