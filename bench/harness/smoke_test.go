package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tdspool/tdspool/internal/stack"
)

// TestSmoke runs the harness end to end in seconds: the in-process backend (standin, lean mode), Envoy with plain
// tcp_proxy and Envoy with tdspool (HAProxy too when installed), every workload at a tiny
// size, and the report with its charts. It proves the harness works, not how fast anything is.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Envoy and Redis")
	}
	if _, err := stack.EnvoyBinary(); err != nil {
		t.Skip(err)
	}
	if _, err := stack.ModuleDir(); err != nil {
		t.Skip(err)
	}
	p := SmokePlan()
	p.InProcess = true
	p.Out = t.TempDir()
	rep, err := Run(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(rep, p.Out); err != nil {
		t.Fatal(err)
	}
	tbl := rep.table()
	for _, name := range []string{"direct", "envoy-tcp", "tdspool"} {
		for _, w := range []string{"ping", "login", "stream"} {
			c, ok := tbl[key{w, name, rep.params(w)[0]}]
			if !ok || c.Res.Ops == 0 || c.Res.Errors != 0 {
				t.Errorf("%s %s: ops=%d errors=%d %s", w, name, c.Res.Ops, c.Res.Errors, c.Res.FirstError)
			}
		}
	}
	// Pooled logins: answered from the pool, so the backend sees far fewer logins than the
	// clients made (the backend's own count).
	for _, name := range []string{"tdspool-pool", "tdspool-pool-slowlogin"} {
		c, ok := tbl[key{"login", name, p.LoginConc}]
		if !ok || c.Res.Ops == 0 || c.Res.Errors != 0 || c.BackendLogins < 0 || c.BackendLogins*2 > c.Res.Ops {
			t.Errorf("login %s: ops=%d errors=%d backend logins=%d %s", name, c.Res.Ops, c.Res.Errors, c.BackendLogins, c.Res.FirstError)
		}
	}
	if c := tbl[key{"login", "direct", p.LoginConc}]; c.BackendLogins < c.Res.Ops {
		t.Errorf("login direct: %d backend logins for %d client logins", c.BackendLogins, c.Res.Ops)
	}
	if c := tbl[key{"queue", "tdspool", p.QueueWorkers}]; c.Res.Ops == 0 || c.Res.Errors != 0 {
		t.Errorf("queue tdspool: ops=%d errors=%d %s", c.Res.Ops, c.Res.Errors, c.Res.FirstError)
	}
	if c := tbl[key{"idle", "tdspool", 20}]; c.Res.Sessions != 20 {
		t.Errorf("idle tdspool: %d sessions held, want 20 (%s)", c.Res.Sessions, c.Res.FirstError)
	}
	for _, n := range rep.Notes {
		if strings.HasPrefix(n, "backend") {
			t.Errorf("note: %s", n)
		}
	}
	md, _ := os.ReadFile(filepath.Join(p.Out, "results.md"))
	for _, want := range []string{"## ping", "| tdspool |", "## Goals", "## Gates (issue 12", "## Figures (issue 13", "backend logins per 1,000 client logins"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
	for _, f := range []string{"ping-latency-c2.png", "login-latency.png"} {
		if st, err := os.Stat(filepath.Join(p.Out, f)); err != nil || st.Size() == 0 {
			t.Errorf("chart %s: %v", f, err)
		}
	}
	if t.Failed() {
		t.Logf("results.md:\n%s", md)
	}
}
