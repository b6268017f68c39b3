package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tdspool/tdspool/standin/compat"
)

// TestDashboardMatchesLiveStats takes /stats/prometheus from a real Envoy with the module
// after traffic through every path it has here (Redis coordination, each client encryption
// mode, transactions and prepared statements of the go-mssqldb workload) and runs the
// dashboard's metric check on it: a panel or alert reading a stat that is no longer exported
// fails, and so does a tdspool stat that no dashboard panel reads. The check's output says
// what to add or rename.
func TestDashboardMatchesLiveStats(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is needed for deployments/grafana/check_metrics.py")
	}
	st := startTDSStack(t, tdsStackOptions{capacity: 4, redis: true, tls: true})
	for _, mode := range compat.GoEncryptModes {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := compat.RunGo(ctx, st.target(), mode, func(string, ...any) {})
		cancel()
		if err != nil {
			t.Fatalf("encrypt=%s: %v", mode, err)
		}
	}
	st.waitIdle(t)

	body, err := st.envoy.Admin("/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body, "envoy_tdspool_bucket_login_ms_bucket{") {
		t.Fatalf("no login_ms histogram in /stats/prometheus after logins:\n%s", tailLines(body, 40))
	}
	capture := filepath.Join(t.TempDir(), "stats_prometheus.txt")
	if err := os.WriteFile(capture, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python, "../../deployments/grafana/check_metrics.py", "--capture", capture).CombinedOutput()
	if err != nil {
		t.Fatalf("deployments/grafana/check_metrics.py on a live capture: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
