package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tdspool/tdspool/bench/load"
)

// agg merges the rounds of one (workload, target, param): rates are averaged, percentiles
// are the median over rounds.
func agg(cells []Cell) Cell {
	if len(cells) == 1 {
		return cells[0]
	}
	out := cells[0]
	n := float64(len(cells))
	var qps, mbps, cpu, sw, fair, beCPU, loadCPU float64
	var ops, errs, bl int64
	med := func(get func(c Cell) time.Duration) time.Duration {
		v := make([]time.Duration, len(cells))
		for i, c := range cells {
			v[i] = get(c)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	for _, c := range cells {
		qps += c.Res.QPS
		mbps += c.Res.MBps
		cpu += c.ProxyCPUus
		sw += c.ProxyCtxSw
		beCPU += c.BackendCPUus
		loadCPU += c.LoadCPUus
		fair += c.Res.Fairness
		ops += c.Res.Ops
		errs += c.Res.Errors
		if bl >= 0 && c.BackendLogins >= 0 {
			bl += c.BackendLogins
		} else {
			bl = -1
		}
		if out.Res.FirstError == "" {
			out.Res.FirstError = c.Res.FirstError
		}
	}
	out.Res.QPS, out.Res.MBps, out.ProxyCPUus, out.ProxyCtxSw, out.Res.Fairness = qps/n, mbps/n, cpu/n, sw/n, fair/n
	out.BackendCPUus, out.LoadCPUus = beCPU/n, loadCPU/n
	out.Res.Ops, out.Res.Errors, out.BackendLogins = ops, errs, bl
	out.Res.Lat.P50 = med(func(c Cell) time.Duration { return c.Res.Lat.P50 })
	out.Res.Lat.P90 = med(func(c Cell) time.Duration { return c.Res.Lat.P90 })
	out.Res.Lat.P99 = med(func(c Cell) time.Duration { return c.Res.Lat.P99 })
	out.Res.Lat.P999 = med(func(c Cell) time.Duration { return c.Res.Lat.P999 })
	out.Res.LoginLat.P50 = med(func(c Cell) time.Duration { return c.Res.LoginLat.P50 })
	out.Res.LoginLat.P90 = med(func(c Cell) time.Duration { return c.Res.LoginLat.P90 })
	out.Res.LoginLat.P99 = med(func(c Cell) time.Duration { return c.Res.LoginLat.P99 })
	out.Res.LoginLat.P999 = med(func(c Cell) time.Duration { return c.Res.LoginLat.P999 })
	return out
}

type key struct {
	workload, target string
	param            int
}

// table is the aggregated cells by key.
func (r *Report) table() map[key]Cell {
	groups := map[key][]Cell{}
	for _, c := range r.Cells {
		k := key{c.Workload, c.Target, c.Param}
		groups[k] = append(groups[k], c)
	}
	m := map[key]Cell{}
	for k, cs := range groups {
		m[k] = agg(cs)
	}
	return m
}

func (r *Report) params(workload string) []int {
	var ps []int
	for _, c := range r.Cells {
		if c.Workload == workload && !slices.Contains(ps, c.Param) {
			ps = append(ps, c.Param)
		}
	}
	sort.Ints(ps)
	return ps
}

// baselines of a target's group.
func baselines(group string) (direct, tcp string) {
	if group == "tls" {
		return "direct+full", "envoy-tcp+full"
	}
	return "direct", "envoy-tcp"
}

type metric struct {
	name string
	get  func(c Cell) float64
	fmt  func(v float64) string
	// no ratio to direct (e.g. proxy CPU, which direct does not have)
	noDirect bool
}

func durMetric(name string, get func(c Cell) time.Duration) metric {
	return metric{name: name, get: func(c Cell) float64 { return float64(get(c)) }, fmt: func(v float64) string { return d(time.Duration(v)) }}
}

var (
	mQPS = metric{name: "qps", get: func(c Cell) float64 { return c.Res.QPS }, fmt: func(v float64) string { return fmt.Sprintf("%.0f", v) }}
	mCPU = metric{name: "proxy CPU/op", get: func(c Cell) float64 { return c.ProxyCPUus },
		fmt: func(v float64) string { return fmt.Sprintf("%.1fµs", v) }, noDirect: true}
	mBeCPU = metric{name: "backend CPU/op", get: func(c Cell) float64 { return c.BackendCPUus },
		fmt: func(v float64) string { return fmt.Sprintf("%.1fµs", v) }}
	mLoadCPU = metric{name: "client CPU/op", get: func(c Cell) float64 { return c.LoadCPUus },
		fmt: func(v float64) string { return fmt.Sprintf("%.1fµs", v) }}
	mAllCPU = metric{name: "all CPU/op", get: func(c Cell) float64 {
		if c.BackendCPUus == 0 || c.LoadCPUus == 0 {
			return 0
		}
		return c.ProxyCPUus + c.BackendCPUus + c.LoadCPUus
	}, fmt: func(v float64) string { return fmt.Sprintf("%.1fµs", v) }}
	mCtx = metric{name: "ctx sw/op", get: func(c Cell) float64 { return c.ProxyCtxSw },
		fmt: func(v float64) string { return fmt.Sprintf("%.2f", v) }, noDirect: true}
	mP50  = durMetric("p50", func(c Cell) time.Duration { return c.Res.Lat.P50 })
	mP90  = durMetric("p90", func(c Cell) time.Duration { return c.Res.Lat.P90 })
	mP99  = durMetric("p99", func(c Cell) time.Duration { return c.Res.Lat.P99 })
	mP999 = durMetric("p99.9", func(c Cell) time.Duration { return c.Res.Lat.P999 })
	mL50  = durMetric("login p50", func(c Cell) time.Duration { return c.Res.LoginLat.P50 })
	mL90  = durMetric("login p90", func(c Cell) time.Duration { return c.Res.LoginLat.P90 })
	mL99  = durMetric("login p99", func(c Cell) time.Duration { return c.Res.LoginLat.P99 })
	mL999 = durMetric("login p99.9", func(c Cell) time.Duration { return c.Res.LoginLat.P999 })
	mLPS  = metric{name: "logins/s", get: func(c Cell) float64 { return c.Res.QPS }, fmt: func(v float64) string { return fmt.Sprintf("%.0f", v) }}
	mMBps = metric{name: "MB/s", get: func(c Cell) float64 { return c.Res.MBps }, fmt: func(v float64) string { return fmt.Sprintf("%.1f", v) }}
)

// ratio formats v/base.
func ratio(v, base float64) string {
	if base == 0 || v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", v/base)
}

// section writes one table: a row per target, for each metric the value, ×direct, ×tcp_proxy.
func (r *Report) section(b *strings.Builder, t map[key]Cell, workload string, param int, ms []metric) {
	fmt.Fprintf(b, "| target |")
	for _, m := range ms {
		if m.noDirect {
			fmt.Fprintf(b, " %s | ×tcp |", m.name)
		} else {
			fmt.Fprintf(b, " %s | ×direct | ×tcp |", m.name)
		}
	}
	fmt.Fprintf(b, " errors |\n|---|")
	for _, m := range ms {
		if m.noDirect {
			b.WriteString("--:|--:|")
		} else {
			b.WriteString("--:|--:|--:|")
		}
	}
	b.WriteString("--:|\n")
	for _, name := range r.Targets {
		c, ok := t[key{workload, name, param}]
		if !ok {
			continue
		}
		dn, tn := baselines(c.Group)
		dc, hasD := t[key{workload, dn, param}]
		tc, hasT := t[key{workload, tn, param}]
		fmt.Fprintf(b, "| %s |", name)
		for _, m := range ms {
			v := m.get(c)
			cell := m.fmt(v)
			if v == 0 {
				cell = "–"
			}
			rd, rt := "–", "–"
			if hasD {
				rd = ratio(v, m.get(dc))
			}
			if hasT {
				rt = ratio(v, m.get(tc))
			}
			if m.noDirect {
				fmt.Fprintf(b, " %s | %s |", cell, rt)
			} else {
				fmt.Fprintf(b, " %s | %s | %s |", cell, rd, rt)
			}
		}
		fmt.Fprintf(b, " %d |\n", c.Res.Errors)
	}
	b.WriteString("\n")
}

// goal is one line of the issue's goals.
type goal struct {
	what, measured, want string
	ok                   bool
	have                 bool
}

func (r *Report) goals(t map[key]Cell) []goal {
	var gs []goal
	get := func(w, tgt string, p int) (Cell, bool) { c, ok := t[key{w, tgt, p}]; return c, ok }
	for _, p := range r.params("ping") {
		tp, ok1 := get("ping", "tdspool", p)
		tc, ok2 := get("ping", "envoy-tcp", p)
		if ok1 && ok2 && tc.Res.Lat.P50 > 0 && tc.Res.QPS > 0 {
			r50 := float64(tp.Res.Lat.P50) / float64(tc.Res.Lat.P50)
			r99 := float64(tp.Res.Lat.P99) / float64(tc.Res.Lat.P99)
			rq := tp.Res.QPS / tc.Res.QPS
			gs = append(gs,
				goal{fmt.Sprintf("ping c=%d p50 vs tcp_proxy", p), fmt.Sprintf("%.2f×", r50), "≤ 1.05×", r50 <= 1.05, true},
				goal{fmt.Sprintf("ping c=%d p99 vs tcp_proxy", p), fmt.Sprintf("%.2f×", r99), "≤ 1.10×", r99 <= 1.10, true},
				goal{fmt.Sprintf("ping c=%d qps vs tcp_proxy", p), fmt.Sprintf("%.2f×", rq), "≥ 0.95×", rq >= 0.95, true})
		}
		if th, ok := get("ping", "haproxy", p); ok1 && ok && th.Res.QPS > 0 {
			rq := tp.Res.QPS / th.Res.QPS
			r50 := float64(tp.Res.Lat.P50) / float64(th.Res.Lat.P50)
			gs = append(gs, goal{fmt.Sprintf("ping c=%d vs HAProxy (qps, p50)", p), fmt.Sprintf("%.2f×, %.2f×", rq, r50),
				"qps ≥ 1×, p50 ≤ 1×", rq >= 1 && r50 <= 1, true})
		}
	}
	for _, p := range r.params("login") {
		tp, ok1 := get("login", "tdspool", p)
		dc, ok2 := get("login", "direct", p)
		if ok1 && ok2 && dc.Res.LoginLat.P50 > 0 {
			rl := float64(tp.Res.LoginLat.P50) / float64(dc.Res.LoginLat.P50)
			rr := dc.Res.QPS / tp.Res.QPS
			gs = append(gs, goal{fmt.Sprintf("login c=%d p50 vs direct (Redis slot included)", p), fmt.Sprintf("%.2f× (logins/s %.2f× fewer)", rl, rr),
				"≤ 1.5×", rl <= 1.5, true})
		}
	}
	for _, p := range r.params("stream") {
		tp, ok1 := get("stream", "tdspool", p)
		tc, ok2 := get("stream", "envoy-tcp", p)
		if ok1 && ok2 && tc.Res.MBps > 0 {
			rm := tp.Res.MBps / tc.Res.MBps
			gs = append(gs, goal{fmt.Sprintf("stream c=%d MB/s vs tcp_proxy", p), fmt.Sprintf("%.2f×", rm), "≥ 0.9×", rm >= 0.9, true})
		}
	}
	for _, p := range r.params("idle") {
		tp, ok1 := get("idle", "tdspool", p)
		tc, ok2 := get("idle", "envoy-tcp", p)
		if ok1 && ok2 {
			mod := tp.RSSPerSessionKB - tc.RSSPerSessionKB
			gs = append(gs, goal{fmt.Sprintf("idle %d: module memory per session (tdspool − tcp_proxy RSS)", p),
				fmt.Sprintf("%.1f KB (%.1f − %.1f)", mod, tp.RSSPerSessionKB, tc.RSSPerSessionKB), "≤ 16 KB", mod <= 16, true})
		}
		if ok1 {
			gs = append(gs, goal{fmt.Sprintf("idle %d sessions held on one Envoy", p), fmt.Sprintf("%d held, %d errors", tp.Res.Sessions, tp.Res.Errors),
				"all", tp.Res.Sessions == p && tp.Res.Errors == 0, true})
		}
	}
	return gs
}

// gateSection is one issue's gates or figures.
type gateSection struct {
	title string
	goals []goal
}

// issueGates are the gates and figures of issues 12 (module-owned backend leg, TLS in the
// filter), 13 (session pooling) and 14 (transaction pooling), from the cells present.
func (r *Report) issueGates(t map[key]Cell) []gateSection {
	get := func(w, tgt string, p int) (Cell, bool) { c, ok := t[key{w, tgt, p}]; return c, ok }
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	dur := func(c Cell) float64 { return float64(c.Res.Lat.P50) }
	var i12, i13, i14 []goal
	pings := r.params("ping")
	for _, p := range pings {
		m, ok1 := get("ping", "tdspool-module", p)
		tc, ok2 := get("ping", "tdspool", p)
		if !ok1 || !ok2 {
			continue
		}
		if p == 1 {
			v := ratio(dur(m), dur(tc))
			i12 = append(i12, goal{"module leg vs tcp_proxy leg: ping c=1 p50", fmt.Sprintf("%.2f× (%s vs %s)", v, d(m.Res.Lat.P50), d(tc.Res.Lat.P50)), "≤ 1.10×", v <= 1.10, true})
		}
		if p == pings[len(pings)-1] {
			v := ratio(m.Res.QPS, tc.Res.QPS)
			i12 = append(i12, goal{fmt.Sprintf("module leg vs tcp_proxy leg: ping c=%d qps", p), fmt.Sprintf("%.2f× (%.0f vs %.0f)", v, m.Res.QPS, tc.Res.QPS), "≥ 0.90×", v >= 0.90, true})
		}
		if p != 1 && p != pings[len(pings)-1] {
			v := ratio(m.Res.QPS, tc.Res.QPS)
			i12 = append(i12, goal{fmt.Sprintf("module leg vs tcp_proxy leg: ping c=%d qps (no gate)", p), fmt.Sprintf("%.2f×", v), "–", true, false})
		}
		v := ratio(m.ProxyCPUus, tc.ProxyCPUus)
		i12 = append(i12, goal{fmt.Sprintf("module leg vs tcp_proxy leg: proxy CPU per ping c=%d (no gate)", p), fmt.Sprintf("%.2f× (%.1f vs %.1f µs)", v, m.ProxyCPUus, tc.ProxyCPUus), "–", true, false})
	}
	for _, p := range r.params("stream") {
		m, ok1 := get("stream", "tdspool-module", p)
		tc, ok2 := get("stream", "tdspool", p)
		if ok1 && ok2 {
			v := ratio(m.Res.MBps, tc.Res.MBps)
			i12 = append(i12, goal{"module leg vs tcp_proxy leg: stream MB/s", fmt.Sprintf("%.2f× (%.1f vs %.1f)", v, m.Res.MBps, tc.Res.MBps), "≥ 0.90×", v >= 0.90, true})
		}
	}
	for _, p := range pings {
		f, ok1 := get("ping", "tdspool+full", p)
		e, ok2 := get("ping", "envoy-tcp+full", p)
		if !ok1 || !ok2 || p == 1 {
			continue
		}
		v := ratio(f.Res.QPS, e.Res.QPS)
		i12 = append(i12, goal{fmt.Sprintf("tdspool+full vs envoy-tcp+full: ping c=%d qps", p), fmt.Sprintf("%.2f×", v), "≥ 0.90×", v >= 0.90, true})
		cpu := ratio(f.ProxyCPUus, e.ProxyCPUus)
		i12 = append(i12, goal{fmt.Sprintf("tdspool+full vs envoy-tcp+full: proxy CPU per ping c=%d", p), fmt.Sprintf("%.2f× (%.1f vs %.1f µs)", cpu, f.ProxyCPUus, e.ProxyCPUus), "≤ 1.5×", cpu <= 1.5, true})
	}
	for _, name := range []string{"tdspool-module+full", "tdspool-module+strict", "tdspool-tcp8+strict"} {
		for _, p := range pings {
			c, ok1 := get("ping", name, p)
			base, ok2 := get("ping", "direct+full", p)
			if ok1 && ok2 {
				i12 = append(i12, goal{fmt.Sprintf("%s vs direct+full: ping c=%d qps, p50", name, p),
					fmt.Sprintf("%.2f×, %.2f× (%.0f qps, %s)", ratio(c.Res.QPS, base.Res.QPS), ratio(dur(c), dur(base)), c.Res.QPS, d(c.Res.Lat.P50)), "row", true, false})
			}
		}
	}
	for _, p := range r.params("login") {
		for _, pair := range []struct{ pooled, direct, want string }{{"tdspool-pool", "direct", "≤ 1.0×"}, {"tdspool-pool-slowlogin", "direct-slowlogin", "≤ 0.3×"}} {
			c, ok1 := get("login", pair.pooled, p)
			dc, ok2 := get("login", pair.direct, p)
			if !ok1 || !ok2 {
				continue
			}
			limit := 1.0
			if pair.want == "≤ 0.3×" {
				limit = 0.3
			}
			rl := ratio(float64(c.Res.LoginLat.P50), float64(dc.Res.LoginLat.P50))
			i13 = append(i13, goal{fmt.Sprintf("%s vs %s: login p50 (connect → LOGINACK), c=%d", pair.pooled, pair.direct, p),
				fmt.Sprintf("%.2f× (%s vs %s)", rl, d(c.Res.LoginLat.P50), d(dc.Res.LoginLat.P50)), pair.want, rl <= limit, true})
			rc := ratio(float64(c.Res.Lat.P50), float64(dc.Res.Lat.P50))
			i13 = append(i13, goal{fmt.Sprintf("%s vs %s: connect+login+SELECT 1+close p50, c=%d", pair.pooled, pair.direct, p),
				fmt.Sprintf("%.2f× (%s vs %s)", rc, d(c.Res.Lat.P50), d(dc.Res.Lat.P50)), pair.want, rc <= limit, true})
			rr := ratio(dc.Res.QPS, c.Res.QPS) // inverse: fewer is better the other way round
			i13 = append(i13, goal{fmt.Sprintf("%s vs %s: logins/s, c=%d", pair.pooled, pair.direct, p),
				fmt.Sprintf("%.0f vs %.0f (direct/pooled %.2f×)", c.Res.QPS, dc.Res.QPS, rr), pair.want + " (direct/pooled)", rr <= limit, true})
			if c.BackendLogins >= 0 && c.Res.Ops > 0 {
				per := float64(c.BackendLogins) * 1000 / float64(c.Res.Ops)
				i13 = append(i13, goal{fmt.Sprintf("%s: backend logins per 1,000 client logins", pair.pooled),
					fmt.Sprintf("%.1f (%d backend logins for %d client logins, warm-up included)", per, c.BackendLogins, c.Res.Ops), "≤ 10", per <= 10, true})
			}
		}
	}
	for _, p := range pings {
		c, ok1 := get("ping", "tdspool-pool", p)
		m, ok2 := get("ping", "tdspool-module", p)
		if ok1 && ok2 {
			q := ratio(c.Res.QPS, m.Res.QPS)
			l := ratio(dur(c), dur(m))
			i13 = append(i13, goal{fmt.Sprintf("pooled vs unpooled module leg: ping c=%d qps, p50", p), fmt.Sprintf("%.2f×, %.2f×", q, l),
				"within 10%", q >= 0.90 && l <= 1.10, true})
		}
	}
	for _, p := range r.params("stream") {
		c, ok1 := get("stream", "tdspool-pool", p)
		m, ok2 := get("stream", "tdspool-module", p)
		if ok1 && ok2 {
			v := ratio(c.Res.MBps, m.Res.MBps)
			i13 = append(i13, goal{"pooled vs unpooled module leg: stream MB/s", fmt.Sprintf("%.2f×", v), "within 10%", v >= 0.90, true})
		}
	}
	if len(pings) > 0 {
		p := pings[len(pings)-1]
		c, ok1 := get("ping", "tdspool-txpool", p)
		sm, ok2 := get("ping", "tdspool-pool", p)
		if ok1 && ok2 {
			i14 = append(i14, goal{fmt.Sprintf("transaction vs session mode: ping c=%d qps", p), fmt.Sprintf("%.2f× (%.0f vs %.0f)", ratio(c.Res.QPS, sm.Res.QPS), c.Res.QPS, sm.Res.QPS), "figure", true, false})
		}
		for _, name := range []string{"tdspool-txpool", "tdspool-pool"} {
			if c, ok := get("ping", name, p); ok && c.BorrowWait != "" {
				i14 = append(i14, goal{fmt.Sprintf("%s: borrow wait p99 at ping c=%d", name, p), c.BorrowWait, "figure", true, false})
			}
		}
	}
	var out []gateSection
	for _, s := range []gateSection{
		{"Gates (issue 12: the module-owned backend leg, TLS in the filter)", i12},
		{"Figures (issue 13: session pooling)", i13},
		{"Figures (issue 14: transaction pooling)", i14},
	} {
		if len(s.goals) > 0 {
			out = append(out, s)
		}
	}
	return out
}

// Markdown renders the report.
func (r *Report) Markdown() string {
	t := r.table()
	var b strings.Builder
	fmt.Fprintf(&b, "# tdspool benchmark — %s run\n\n", r.Plan.Name)
	fmt.Fprintf(&b, "Started %s, took %s. Generated by `tdsbench run -plan %s` (bench/README.md). ", r.Started.UTC().Format("2006-01-02 15:04 MST"),
		r.Duration.Round(time.Second), r.Plan.Name)
	b.WriteString("Every target ran in the same run against the same backend, one after the other (order rotated per round); ")
	b.WriteString("the load generator, the backend and the proxy share this machine, so ratios between targets mean more than absolute figures.\n\n")
	b.WriteString("**Machine**: ")
	keys := make([]string, 0, len(r.Machine))
	for k := range r.Machine {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s", k, r.Machine[k])
	}
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "**Targets**: %s. Ratios compare with `direct` and `envoy-tcp` (plain tcp_proxy) of the same TLS family: plaintext rows with the plaintext baselines, "+
		"TLS rows (`+full` = TDS 7 full TLS, `+strict` = TDS 8) with `direct+full` and `envoy-tcp+full` (TLS passed through to the backend). "+
		"`proxy CPU/op` is the proxy process's CPU time (user+system from /proc) per operation.\n\n", strings.Join(r.Targets, ", "))
	if len(r.Notes) > 0 {
		b.WriteString("**Notes**:\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	if gs := r.goals(t); len(gs) > 0 {
		b.WriteString("## Goals (issue 7), this run\n\n| goal | measured | wanted | met |\n|---|---|---|---|\n")
		for _, g := range gs {
			v := "no"
			if g.ok {
				v = "yes"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", g.what, g.measured, g.want, v)
		}
		b.WriteString("\n")
	}
	for _, sec := range r.issueGates(t) {
		fmt.Fprintf(&b, "## %s, this run\n\n| gate / figure | measured | wanted | met |\n|---|---|---|---|\n", sec.title)
		for _, g := range sec.goals {
			v := "no"
			switch {
			case !g.have:
				v = "–"
			case g.ok:
				v = "yes"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", g.what, g.measured, g.want, v)
		}
		b.WriteString("\n")
	}
	for _, p := range r.params("ping") {
		fmt.Fprintf(&b, "## ping — `SELECT 1`, %d sessions\n\n", p)
		r.section(&b, t, "ping", p, []metric{mQPS, mP50, mP90, mP99, mP999, mCPU, mCtx})
		fmt.Fprintf(&b, "![ping latency c=%d](ping-latency-c%d.png)\n\n", p, p)
	}
	if len(r.params("ping")) > 1 {
		b.WriteString("![ping qps vs concurrency](ping-qps.png)\n\n")
	}
	for _, p := range r.params("login") {
		fmt.Fprintf(&b, "## login — connect, login, `SELECT 1`, close; %d workers\n\n", p)
		r.section(&b, t, "login", p, []metric{mLPS, mL50, mL90, mL99, mL999, mCPU, mBeCPU, mLoadCPU, mAllCPU})
		b.WriteString("![login latency](login-latency.png)\n\n")
	}
	for _, p := range r.params("stream") {
		fmt.Fprintf(&b, "## stream — %d MB results of mixed column types read end to end; %d sessions\n\n", r.Plan.StreamBytes>>20, p)
		r.section(&b, t, "stream", p, []metric{mMBps, mP50, mP99, mCPU})
	}
	for _, p := range r.params("queue") {
		fmt.Fprintf(&b, "## queue — %d workers on a path capped at %d sessions, each holding its session %s\n\n", p, r.Plan.QueueCap, r.Plan.QueueHold)
		b.WriteString("`login` here is connect to LOGINACK, i.e. mostly the wait for a slot (HAProxy: for a server connection under `maxconn`). " +
			"Fairness is Jain's index over the workers' completed sessions (1 = every worker got the same share).\n\n")
		b.WriteString("| target | sessions/s | login p50 | login p90 | login p99 | login p99.9 | fairness | per-worker min..max | errors |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, name := range r.Targets {
			c, ok := t[key{"queue", name, p}]
			if !ok {
				continue
			}
			fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %s | %.3f | %d..%d | %d |\n", name, c.Res.QPS, d(c.Res.LoginLat.P50), d(c.Res.LoginLat.P90),
				d(c.Res.LoginLat.P99), d(c.Res.LoginLat.P999), c.Res.Fairness, c.Res.MinMaxOps[0], c.Res.MinMaxOps[1], c.Res.Errors)
		}
		b.WriteString("\n")
	}
	if ps := r.params("idle"); len(ps) > 0 {
		b.WriteString("## idle — sessions opened and held (a fresh proxy process per row)\n\n")
		b.WriteString("RSS growth per session is (RSS while held − RSS before) / sessions; Envoy heap is tcmalloc's `allocated` from /memory " +
			"(Envoy's C++ objects; the Go module's memory is outside it). The module's own cost per session is tdspool's RSS growth minus tcp_proxy's.\n\n")
		b.WriteString("| sessions | target | held | open time | RSS before | RSS held | RSS/session | Envoy heap/session | ×tcp | errors |\n|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, p := range ps {
			tc, hasT := t[key{"idle", "envoy-tcp", p}]
			for _, name := range []string{"haproxy", "envoy-tcp", "tdspool", "tdspool+full"} {
				c, ok := t[key{"idle", name, p}]
				if !ok {
					continue
				}
				rt := "–"
				if hasT {
					rt = ratio(c.RSSPerSessionKB, tc.RSSPerSessionKB)
				}
				heap := "–"
				if c.HeapPerSessionKB > 0 {
					heap = fmt.Sprintf("%.1f KB", c.HeapPerSessionKB)
				}
				fmt.Fprintf(&b, "| %d | %s | %d | %s | %.1f MB | %.1f MB | %.1f KB | %s | %s | %d |\n", p, name, c.Res.Sessions,
					c.Res.OpenTime.Round(time.Millisecond), float64(c.RSSBeforeKB)/1024, float64(c.RSSHeldKB)/1024, c.RSSPerSessionKB, heap, rt, c.Res.Errors)
			}
		}
		b.WriteString("\n")
	}
	var errs []string
	for _, name := range r.Targets {
		for _, w := range []string{"ping", "login", "stream", "queue", "idle"} {
			for _, p := range r.params(w) {
				if c, ok := t[key{w, name, p}]; ok && c.Res.FirstError != "" {
					errs = append(errs, fmt.Sprintf("- %s %s %d: %s", w, name, p, c.Res.FirstError))
				}
			}
		}
	}
	if len(errs) > 0 {
		b.WriteString("## Errors (first per cell)\n\n" + strings.Join(errs, "\n") + "\n\n")
	}
	if len(r.Profiles) > 0 {
		b.WriteString("## Profiles (perf record -g on the Envoy process)\n\n")
		names := make([]string, 0, len(r.Profiles))
		for name := range r.Profiles {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			fmt.Fprintf(&b, "### %s\n\n```\n%s\n```\n\n", name, r.Profiles[name])
		}
	}
	return b.String()
}

// Write writes results.md, results.json and the charts into dir.
func Write(r *Report, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(r.Markdown()), 0o644); err != nil {
		return err
	}
	js, _ := json.MarshalIndent(r, "", " ")
	if err := os.WriteFile(filepath.Join(dir, "results.json"), js, 0o644); err != nil {
		return err
	}
	return r.charts(dir)
}

var _ = load.TLSDisable
