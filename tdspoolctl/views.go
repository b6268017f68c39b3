package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tdspool/tdspool/coordinator"
)

// table prints rows under a header, aligned.
func (c *ctl) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func (c *ctl) emitJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(100 * time.Millisecond).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// envoyStats is one Envoy's /stats (counters and gauges), or why it could not be read.
type envoyStats struct {
	Admin string            `json:"admin"`
	Stats map[string]uint64 `json:"-"`
	Err   string            `json:"error,omitempty"`
}

// readAdmins fetches /stats from every -admin address (only lines matching filter).
func (c *ctl) readAdmins(ctx context.Context, filter string) []envoyStats {
	var out []envoyStats
	for _, a := range c.o.admins {
		es := envoyStats{Admin: a, Stats: map[string]uint64{}}
		if err := fetchStats(ctx, a, filter, es.Stats); err != nil {
			es.Err = err.Error()
		}
		out = append(out, es)
	}
	return out
}

func fetchStats(ctx context.Context, admin, filter string, into map[string]uint64) error {
	u := "http://" + admin + "/stats?filter=" + url.QueryEscape(filter)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("envoy admin %s: %w", admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("envoy admin %s: %s", admin, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(val), 10, 64); err == nil {
			into[name] = n
		}
	}
	return sc.Err()
}

// pools: one row per bucket.
func (c *ctl) pools(ctx context.Context) error {
	now, err := c.fleet.Now(ctx)
	if err != nil {
		return err
	}
	bs, err := c.allBuckets(ctx)
	if err != nil {
		return err
	}
	envoys := c.readAdmins(ctx, `^tdspool\.bucket\.`)
	type pool struct {
		coordinator.BucketInfo
		EnvoySessions map[string]uint64 `json:"envoy_sessions_active,omitempty"`
		EnvoyQueued   map[string]uint64 `json:"envoy_sessions_queued,omitempty"`
	}
	var ps []pool
	for _, b := range bs {
		p := pool{BucketInfo: b}
		for _, e := range envoys {
			if e.Err != "" {
				continue
			}
			if p.EnvoySessions == nil {
				p.EnvoySessions, p.EnvoyQueued = map[string]uint64{}, map[string]uint64{}
			}
			p.EnvoySessions[e.Admin] = e.Stats["tdspool.bucket."+b.Bucket+".sessions_active"]
			p.EnvoyQueued[e.Admin] = e.Stats["tdspool.bucket."+b.Bucket+".sessions_queued"]
		}
		ps = append(ps, p)
	}
	if c.o.json {
		return c.emitJSON(map[string]any{"pools": ps, "envoys": envoys})
	}
	header := []string{"BUCKET", "STATE", "CAP", "IN_USE", "QUEUED", "CAP_SET_BY", "CAP_SET", "STATE_SET_BY", "PER_PROXY (held/queued)"}
	if len(envoys) > 0 {
		header = append(header, "ENVOY_SESSIONS")
	}
	var rows [][]string
	for _, p := range ps {
		var per []string
		for _, id := range sortedKeys(p.PerProxy) {
			per = append(per, fmt.Sprintf("%s=%d/%d", id, p.PerProxy[id].Held, p.PerProxy[id].Queued))
		}
		stateBy := "-"
		if p.StateBy != "" {
			stateBy = p.StateBy + " " + age(now, p.StateAt) + " ago"
		}
		row := []string{p.Bucket, p.State.String(), strconv.Itoa(p.Cap), strconv.Itoa(p.Held), strconv.Itoa(p.Queued),
			orDash(p.CapBy), age(now, p.CapAt) + " ago", stateBy, orDash(strings.Join(per, " "))}
		if len(envoys) > 0 {
			var es []string
			for _, e := range envoys {
				if e.Err != "" {
					es = append(es, e.Admin+"=?")
				} else {
					es = append(es, fmt.Sprintf("%s=%d", e.Admin, p.EnvoySessions[e.Admin]))
				}
			}
			row = append(row, strings.Join(es, " "))
		}
		rows = append(rows, row)
	}
	return c.table(header, rows)
}

// clientSession reports whether l is a client session: a lease serving a client of its own (not
// a pooled backend idle in its pool, nor a transaction-pooled backend, which shows under the
// client record it serves), a waiter, or a client record.
func clientSession(l coordinator.LeaseInfo) bool {
	if l.Kind == coordinator.KindLease || l.Held {
		return l.Holder.State != coordinator.HolderIdle && l.Holder.Session == ""
	}
	return true
}

// clientState is a client session's STATE in the table, and the backend lease serving it (a
// transaction-pooled client between requests has none).
func clientState(l coordinator.LeaseInfo, servedBy map[string]string) (state, backend string) {
	switch {
	case l.Killing:
		return "killing", servedBy[l.ID]
	case l.Kind == coordinator.KindClient:
		if lease := servedBy[l.ID]; lease != "" {
			return "bound", lease
		}
		return "no-backend", ""
	case !l.Held:
		return "waiting", ""
	}
	return "active", l.ID
}

// clients: one row per client session: a lease held for a client, a waiter, or a client record
// (a transaction-pooled session, which holds a backend only while a request runs). Pooled
// backends idle in their pool are not clients (tdspoolctl servers counts them).
func (c *ctl) clients(ctx context.Context, only []string) error {
	now, err := c.fleet.Now(ctx)
	if err != nil {
		return err
	}
	bs, err := c.allBuckets(ctx)
	if err != nil {
		return err
	}
	var ls []coordinator.LeaseInfo
	servedBy := map[string]string{} // client record id -> the lease bound to it
	for _, b := range bs {
		if len(only) == 1 && b.Bucket != only[0] {
			continue
		}
		for _, l := range b.Leases {
			if l.Held && l.Holder.Session != "" {
				servedBy[l.Holder.Session] = l.ID
			}
			if clientSession(l) {
				ls = append(ls, l)
			}
		}
	}
	sort.SliceStable(ls, func(i, j int) bool {
		if ls[i].Bucket != ls[j].Bucket {
			return ls[i].Bucket < ls[j].Bucket
		}
		return ls[i].Held && !ls[j].Held
	})
	type clientOut struct {
		coordinator.LeaseInfo
		State   string `json:"state"`
		Backend string `json:"backend_lease,omitempty"`
	}
	out := make([]clientOut, 0, len(ls))
	for _, l := range ls {
		st, backend := clientState(l, servedBy)
		out = append(out, clientOut{LeaseInfo: l, State: st, Backend: backend})
	}
	if c.o.json {
		return c.emitJSON(map[string]any{"clients": out})
	}
	var rows [][]string
	for _, l := range out {
		rows = append(rows, []string{l.Bucket, l.Proxy, l.State, orDash(l.Holder.Client), orDash(l.Holder.User),
			orDash(l.Holder.App), orDash(l.Holder.Database), age(now, l.Since), orDash(l.Holder.Pins), l.ID, orDash(l.Backend)})
	}
	return c.table([]string{"BUCKET", "PROXY", "STATE", "CLIENT", "USER", "APP", "DATABASE", "FOR", "PINS", "ID", "BACKEND"}, rows)
}

// servers: backend connections. Each lease is one backend connection (the slot is held until
// that connection is gone); with -admin, each Envoy's own count of upstream connections per
// cluster is shown beside it.
func (c *ctl) servers(ctx context.Context) error {
	bs, err := c.allBuckets(ctx)
	if err != nil {
		return err
	}
	envoys := c.readAdmins(ctx, `^cluster\..*\.upstream_cx_active$`)
	type server struct {
		Bucket string `json:"bucket"`
		Proxy  string `json:"proxy"`
		Active int    `json:"backend_connections"`
		Pinned int    `json:"pinned"` // their sessions have pin reasons (transaction, prepared...)
	}
	var ss []server
	for _, b := range bs {
		pinned := map[string]int{}
		for _, l := range b.Leases {
			if l.Held && l.Holder.Pins != "" {
				pinned[l.Proxy]++
			}
		}
		for _, id := range sortedKeys(b.PerProxy) {
			if n := b.PerProxy[id].Held; n > 0 {
				ss = append(ss, server{Bucket: b.Bucket, Proxy: id, Active: n, Pinned: pinned[id]})
			}
		}
	}
	type upstream struct {
		Admin   string `json:"admin"`
		Cluster string `json:"cluster"`
		Active  uint64 `json:"upstream_cx_active"`
	}
	var us []upstream
	for _, e := range envoys {
		for _, name := range sortedKeys(e.Stats) {
			cl := strings.TrimSuffix(strings.TrimPrefix(name, "cluster."), ".upstream_cx_active")
			us = append(us, upstream{Admin: e.Admin, Cluster: cl, Active: e.Stats[name]})
		}
	}
	logins := backendsByLogin(bs)
	backends := backendLeases(bs)
	pools := poolGauges(c.readAdmins(ctx, `^tdspool\.(listener\.[^.]+\.)?bucket\.[^.]+\.pool_(idle|active|keys)$`))
	if c.o.json {
		return c.emitJSON(map[string]any{"servers": ss, "logins": logins, "backends": backends, "pools": pools,
			"envoy_upstreams": us, "envoys": envoys})
	}
	var rows [][]string
	for _, s := range ss {
		rows = append(rows, []string{s.Bucket, s.Proxy, strconv.Itoa(s.Active), strconv.Itoa(s.Pinned)})
	}
	if err := c.table([]string{"BUCKET", "PROXY", "BACKEND_CONNECTIONS", "PINNED"}, rows); err != nil {
		return err
	}
	rows = nil
	for _, l := range logins {
		rows = append(rows, []string{l.Bucket, l.Proxy, orDash(l.User), orDash(l.Database), orDash(l.App), strconv.Itoa(l.Backends),
			strconv.Itoa(l.Idle), strconv.Itoa(l.Lent)})
	}
	fmt.Fprintln(c.out)
	if err := c.table([]string{"BUCKET", "PROXY", "USER", "DATABASE", "APP", "BACKENDS", "IDLE", "IN_USE"}, rows); err != nil {
		return err
	}
	now, err := c.fleet.Now(ctx)
	if err != nil {
		return err
	}
	rows = nil
	for _, b := range backends {
		rows = append(rows, []string{b.Bucket, b.Proxy, b.State, orDash(b.Holder.User), orDash(b.Holder.Database),
			orDash(b.Holder.App), orDash(b.Holder.Client), orDash(b.Holder.Pins), age(now, b.Since), b.ID})
	}
	fmt.Fprintln(c.out)
	if err := c.table([]string{"BUCKET", "PROXY", "STATE", "USER", "DATABASE", "APP", "SERVING", "PINS", "FOR", "LEASE"}, rows); err != nil {
		return err
	}
	if len(envoys) == 0 {
		return nil
	}
	rows = nil
	for _, p := range pools {
		rows = append(rows, []string{p.Admin, orDash(p.Listener), p.Bucket, strconv.FormatUint(p.Idle, 10),
			strconv.FormatUint(p.Active, 10), strconv.FormatUint(p.Keys, 10)})
	}
	if len(rows) > 0 {
		fmt.Fprintln(c.out)
		if err := c.table([]string{"ENVOY", "LISTENER", "BUCKET", "POOL_IDLE", "POOL_ACTIVE", "POOL_KEYS"}, rows); err != nil {
			return err
		}
	}
	rows = nil
	for _, u := range us {
		rows = append(rows, []string{u.Admin, u.Cluster, strconv.FormatUint(u.Active, 10)})
	}
	for _, e := range envoys {
		if e.Err != "" {
			rows = append(rows, []string{e.Admin, "error: " + e.Err, "-"})
		}
	}
	fmt.Fprintln(c.out)
	return c.table([]string{"ENVOY", "CLUSTER", "UPSTREAM_CX_ACTIVE"}, rows)
}

// loginBackends counts the backend connections one login holds on one proxy, and how many of
// them are idle in a pool and how many serve a client (in use). A lease's holder carries the
// user, database and app name of the login it serves (a pooled backend only ever serves clients
// of its pool key), and the proxy marks it idle while it waits in its pool. A warm-up backend
// shows the app "tdspool-warmup" while its login runs, then its warm-up login.
type loginBackends struct {
	Bucket   string `json:"bucket"`
	Proxy    string `json:"proxy"`
	User     string `json:"user"`
	Database string `json:"database"`
	App      string `json:"app"`
	Backends int    `json:"backends"`
	Idle     int    `json:"idle"`
	Lent     int    `json:"in_use"`
}

// backendsByLogin groups the held leases by bucket, proxy and login, in that order.
func backendsByLogin(bs []coordinator.BucketInfo) []loginBackends {
	counts := map[loginBackends]*[2]int{} // idle, in use
	for _, b := range bs {
		for _, l := range b.Leases {
			if !l.Held {
				continue
			}
			k := loginBackends{Bucket: b.Bucket, Proxy: l.Proxy, User: l.Holder.User, Database: l.Holder.Database, App: l.Holder.App}
			n := counts[k]
			if n == nil {
				n = &[2]int{}
				counts[k] = n
			}
			if l.Holder.State == coordinator.HolderIdle {
				n[0]++
			} else {
				n[1]++
			}
		}
	}
	out := make([]loginBackends, 0, len(counts))
	for k, n := range counts {
		k.Idle, k.Lent = n[0], n[1]
		k.Backends = n[0] + n[1]
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		for _, c := range [][2]string{{a.Bucket, b.Bucket}, {a.Proxy, b.Proxy}, {a.User, b.User}, {a.Database, b.Database}, {a.App, b.App}} {
			if c[0] != c[1] {
				return c[0] < c[1]
			}
		}
		return false
	})
	return out
}

// backendLease is one backend connection (a lease): idle in its pool, or in use by the client
// its holder names (since: when it became so). kill takes its id.
type backendLease struct {
	coordinator.LeaseInfo
	State string `json:"state"` // idle, in_use
}

// backendLeases lists the held leases by bucket, proxy, state and id.
func backendLeases(bs []coordinator.BucketInfo) []backendLease {
	var out []backendLease
	for _, b := range bs {
		for _, l := range b.Leases {
			if !l.Held {
				continue
			}
			st := "in_use"
			if l.Holder.State == coordinator.HolderIdle {
				st = "idle"
			}
			out = append(out, backendLease{LeaseInfo: l, State: st})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		for _, c := range [][2]string{{a.Bucket, b.Bucket}, {a.Proxy, b.Proxy}, {a.State, b.State}, {a.ID, b.ID}} {
			if c[0] != c[1] {
				return c[0] < c[1]
			}
		}
		return false
	})
	return out
}

// poolGauge is one Envoy's session pool of one bucket (per tdspool config: a listener's
// stat_prefix, if it has one), from its pool_idle, pool_active and pool_keys gauges.
type poolGauge struct {
	Admin    string `json:"admin"`
	Listener string `json:"listener,omitempty"`
	Bucket   string `json:"bucket"`
	Idle     uint64 `json:"idle"`
	Active   uint64 `json:"active"`
	Keys     uint64 `json:"keys"`
}

// poolGauges reads the pool gauges out of each Envoy's stats; buckets without a session pool
// (all three gauges 0) are left out.
func poolGauges(envoys []envoyStats) []poolGauge {
	var out []poolGauge
	for _, e := range envoys {
		byBucket := map[[2]string]*poolGauge{}
		var order [][2]string
		for name, v := range e.Stats {
			rest, ok := strings.CutPrefix(name, "tdspool.")
			if !ok {
				continue
			}
			listener := ""
			if after, ok := strings.CutPrefix(rest, "listener."); ok {
				listener, rest, _ = strings.Cut(after, ".")
			}
			rest, ok = strings.CutPrefix(rest, "bucket.")
			if !ok {
				continue
			}
			i := strings.LastIndexByte(rest, '.')
			if i < 0 {
				continue
			}
			bucket, stat := rest[:i], rest[i+1:]
			k := [2]string{listener, bucket}
			g := byBucket[k]
			if g == nil {
				g = &poolGauge{Admin: e.Admin, Listener: listener, Bucket: bucket}
				byBucket[k] = g
				order = append(order, k)
			}
			switch stat {
			case "pool_idle":
				g.Idle = v
			case "pool_active":
				g.Active = v
			case "pool_keys":
				g.Keys = v
			}
		}
		sort.Slice(order, func(i, j int) bool {
			if order[i][1] != order[j][1] {
				return order[i][1] < order[j][1]
			}
			return order[i][0] < order[j][0]
		})
		for _, k := range order {
			if g := byBucket[k]; g.Idle+g.Active+g.Keys > 0 {
				out = append(out, *g)
			}
		}
	}
	return out
}

// proxies: the proxy table.
func (c *ctl) proxies(ctx context.Context) error {
	ps, err := c.fleet.Proxies(ctx)
	if err != nil {
		return err
	}
	now, err := c.fleet.Now(ctx)
	if err != nil {
		return err
	}
	envoys := c.readAdmins(ctx, `^tdspool\.(connections_active|panics_total|coordinator_panics_total|redis_errors_total)$`)
	if c.o.json {
		if ps == nil {
			ps = []coordinator.ProxyInfo{}
		}
		type envoyOut struct {
			envoyStats
			Stats map[string]uint64 `json:"stats"`
		}
		var eo []envoyOut
		for _, e := range envoys {
			eo = append(eo, envoyOut{envoyStats: e, Stats: e.Stats})
		}
		return c.emitJSON(map[string]any{"proxies": ps, "envoys": eo})
	}
	var rows [][]string
	for _, p := range ps {
		alive := "yes"
		if !p.Alive {
			alive = "NO"
		}
		rows = append(rows, []string{p.ID, orDash(p.Host), strconv.Itoa(p.PID), alive, age(now, p.Seen),
			age(now, p.Started), orDash(p.Labels["config"]), strings.Join(p.Buckets, ",")})
	}
	if err := c.table([]string{"PROXY", "HOST", "PID", "ALIVE", "HEARTBEAT_AGE", "UP", "CONFIG", "BUCKETS"}, rows); err != nil {
		return err
	}
	if len(envoys) == 0 {
		return nil
	}
	rows = nil
	for _, e := range envoys {
		if e.Err != "" {
			rows = append(rows, []string{e.Admin, "error: " + e.Err, "", "", ""})
			continue
		}
		st := e.Stats
		rows = append(rows, []string{e.Admin, strconv.FormatUint(st["tdspool.connections_active"], 10),
			strconv.FormatUint(st["tdspool.panics_total"], 10), strconv.FormatUint(st["tdspool.coordinator_panics_total"], 10),
			strconv.FormatUint(st["tdspool.redis_errors_total"], 10)})
	}
	fmt.Fprintln(c.out)
	return c.table([]string{"ENVOY", "CONNECTIONS_ACTIVE", "PANICS", "COORDINATOR_PANICS", "REDIS_ERRORS"}, rows)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
