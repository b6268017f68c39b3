package harness

import (
	"fmt"
	"strings"
	"time"

	"github.com/tdspool/tdspool/bench/load"
)

// FormatResult is a one-paragraph human summary of a load result.
func FormatResult(r load.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s c=%d: ops=%d errors=%d in %s (%.0f/s)", r.Workload, r.Concurrency, r.Ops, r.Errors,
		r.Elapsed.Round(time.Millisecond), r.QPS)
	if r.Lat.N > 0 {
		fmt.Fprintf(&b, "\n  latency   p50=%s p90=%s p99=%s p99.9=%s max=%s", d(r.Lat.P50), d(r.Lat.P90), d(r.Lat.P99), d(r.Lat.P999), d(r.Lat.Max))
	}
	if r.LoginLat.N > 0 {
		fmt.Fprintf(&b, "\n  login     p50=%s p90=%s p99=%s p99.9=%s max=%s", d(r.LoginLat.P50), d(r.LoginLat.P90), d(r.LoginLat.P99), d(r.LoginLat.P999), d(r.LoginLat.Max))
	}
	if r.MBps > 0 {
		fmt.Fprintf(&b, "\n  stream    %.1f MB/s", r.MBps)
	}
	if r.Workload == "idle" {
		fmt.Fprintf(&b, "\n  idle      %d sessions open in %s", r.Sessions, r.OpenTime.Round(time.Millisecond))
	}
	if r.Workload == "queue" {
		fmt.Fprintf(&b, "\n  fairness  Jain %.3f, per-worker completions %d..%d", r.Fairness, r.MinMaxOps[0], r.MinMaxOps[1])
	}
	if r.FirstError != "" {
		fmt.Fprintf(&b, "\n  first error: %s", r.FirstError)
	}
	return b.String()
}

// d formats a duration compactly: µs below 10 ms, ms above.
func d(v time.Duration) string {
	switch {
	case v == 0:
		return "-"
	case v < 10*time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(v)/1e3)
	case v < 10*time.Second:
		return fmt.Sprintf("%.1fms", float64(v)/1e6)
	}
	return fmt.Sprintf("%.1fs", v.Seconds())
}
