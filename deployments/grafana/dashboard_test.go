package grafana

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

// The committed JSON is what Build makes: a panel edited in tdspool-dashboard.json by hand, or
// added in dashboard.go without `go generate`, fails here.
func TestCommittedDashboardIsGenerated(t *testing.T) {
	want, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("tdspool-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("tdspool-dashboard.json is not what dashboard.go makes: run `go generate ./deployments/grafana` and commit it")
	}
}

// What Grafana and check_metrics.py rely on: the datasource variable, unique panel ids, panels
// inside the 24-column grid and a datasource on every query.
func TestDashboardStructure(t *testing.T) {
	out, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Templating struct {
			List []struct{ Name, Type, Query any }
		}
		Panels []struct {
			ID      int
			Type    string
			Title   string
			GridPos struct{ X, Y, W, H int }
			Targets []struct {
				Expr       string
				Datasource struct{ UID string }
			}
		}
	}
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name.(string)] = true
	}
	for _, v := range []string{"DS_PROMETHEUS", "job", "instance", "bucket"} {
		if !vars[v] {
			t.Errorf("no template variable %s", v)
		}
	}
	ids, queries := map[int]bool{}, 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: duplicate id %d", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X+p.GridPos.W > 24 || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, x := range p.Targets {
			queries++
			if x.Datasource.UID != "${DS_PROMETHEUS}" || x.Expr == "" {
				t.Errorf("panel %q: query %q on datasource %q", p.Title, x.Expr, x.Datasource.UID)
			}
		}
	}
	t.Logf("%d panels, %d queries", len(d.Panels), queries)
}
