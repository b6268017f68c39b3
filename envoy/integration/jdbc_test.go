package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tdspool/tdspool/standin/compat"
)

// The proxy's own login errors reach mssql-jdbc as SQLExceptions with their numbers and
// messages, after the driver's own retries: 10928 (pool exhausted) and 40613 (backend
// unavailable) are in its transient-error list, so with connectRetryCount 1 (its default)
// it logs in again (its connect loop, and its login loop within, each retry once: 3 or 4
// refusals counted by the proxy, depending on timing) before the application sees the error.
func TestJDBCProxyLoginErrors(t *testing.T) {
	j := requireJDBC(t)
	for _, tc := range proxyLoginErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			st := startTDSStack(t, tdsStackOptions{capacity: 1, tls: true, bucket: map[string]any{"queue_timeout": "1s"}})
			done := tc.setup(t, st)
			defer done()
			before, _ := st.envoy.Stats()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			got, out, err := compat.RunJDBCLoginError(ctx, j, st.target(), "true", "jdbc-refused")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("mssql-jdbc saw: %+v", got)
			if got.Code != tc.code || !strings.Contains(got.Message, tc.text) {
				t.Errorf("SQLException %d %q, want %d saying %q\n%s", got.Code, got.Message, tc.code, tc.text, out)
			}
			after, _ := st.envoy.Stats()
			stat := "tdspool.bucket.bucket-001." + tc.stat
			n := after[stat] - before[stat]
			if n < 2 {
				t.Errorf("%s moved by %d, want at least 2: the driver did not retry", stat, n)
			}
			t.Logf("%d refused logins before the driver gave up (%d ms)", n, got.Millis)
		})
	}
}

// The whole mssql-jdbc workload through a session-pooled bucket, twice: every connection after
// the first is served by a pooled backend (the modes share one pool key: the encryption of the
// client leg is not part of it), reset on reuse after the previous connection's transactions,
// savepoint, isolation level, temp tables, procedure, query timeout and cancel; the second run
// logs nothing in. Neither run gets SESSIONRECOVERY acknowledged.
func TestJDBCThroughSessionPool(t *testing.T) {
	j := requireJDBC(t)
	st := startTDSStack(t, tdsStackOptions{capacity: 4, tls: true, leg: "module", bucket: sessionPool})
	for run := 1; run <= 2; run++ {
		before := st.backend.Stats()
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		out, err := compat.RunJDBC(ctx, j, st.target(), compat.JDBCModes...)
		cancel()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, out)
		}
		if got, err := compat.JDBCRecoveryNegotiated(out); err != nil || len(got) != len(compat.JDBCModes) || got[0] || got[1] || got[2] {
			t.Errorf("run %d: SESSIONRECOVERY acknowledged per mode %v (%v), want none", run, got, err)
		}
		waitStat(t, st.envoy, "tdspool.connections_active", 0)
		after := st.backend.Stats()
		t.Logf("run %d: %d backend logins, %d resets", run, after.Logins-before.Logins, after.Resets-before.Resets)
		if run == 2 && (after.Logins != before.Logins || after.Resets-before.Resets < int64(len(compat.JDBCModes))) {
			t.Errorf("run 2: %d backend logins, %d resets; want 0 logins and a reset per mode",
				after.Logins-before.Logins, after.Resets-before.Resets)
		}
	}
}
