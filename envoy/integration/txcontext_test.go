package integration

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Session context (sp_set_session_context, SET CONTEXT_INFO) cannot be re-applied on another
// backend, so in transaction mode it pins the client to the backend that holds it. Row-level
// security relies on it: a client that set its tenant must read that tenant back on every
// later request, however busy the pool.

// contextClient is a client that set session context, and how it reads it back.
type contextClient struct {
	name string
	c    *txClient
	read string // the query returning its value and @@SPID
	want string
}

// Three clients set session context three ways (an RPC by name with @read_only, EXEC in a
// batch, SET CONTEXT_INFO) on a bucket capped at 4, then read it back 30 times each while
// four other clients churn the one backend left (autocommit statements and transactions):
// every read returns the client's own value from the same SPID, and pinned_session_context
// counts 3 until the clients leave. Before the pin, the churn took the clients' backends
// (reset on the way) and the reads came back NULL.
func TestTxPoolSessionContextPinsItsBackend(t *testing.T) {
	st := txStack(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const pinned = "tdspool.bucket.bucket-001.pinned_session_context"

	clients := []*contextClient{
		{name: "rpc", c: mustTxClient(t, st), read: "SELECT CAST(SESSION_CONTEXT(N'TenantId') AS nvarchar(64)), @@SPID", want: "tenant-rpc"},
		{name: "batch", c: mustTxClient(t, st), read: "SELECT CAST(SESSION_CONTEXT(N'TenantId') AS nvarchar(64)), @@SPID", want: "tenant-batch"},
		{name: "context_info", c: mustTxClient(t, st), read: "SELECT CONTEXT_INFO(), @@SPID", want: "\x0a\x0b\x0c"},
	}
	// go-mssqldb sends a query without spaces as an RPC of that name (not sp_executesql).
	if _, err := clients[0].c.conn.ExecContext(ctx, "sp_set_session_context",
		sql.Named("key", "TenantId"), sql.Named("value", "tenant-rpc"), sql.Named("read_only", 1)); err != nil {
		t.Fatalf("RPC sp_set_session_context: %v", err)
	}
	if _, err := clients[1].c.conn.ExecContext(ctx,
		"EXEC sys.sp_set_session_context @key = N'TenantId', @value = N'tenant-batch', @read_only = 1"); err != nil {
		t.Fatalf("EXEC sp_set_session_context: %v", err)
	}
	if _, err := clients[2].c.conn.ExecContext(ctx, "SET CONTEXT_INFO 0x0A0B0C"); err != nil {
		t.Fatalf("SET CONTEXT_INFO: %v", err)
	}
	waitStat(t, st.envoy, pinned, 3)

	// The churn: four clients on whatever backend is free, transactions included, so any
	// backend released to the pool is taken (and reset) by one of them.
	churners := []*txClient{mustTxClient(t, st), mustTxClient(t, st), mustTxClient(t, st), mustTxClient(t, st)}
	stop := make(chan struct{})
	var churned atomic.Int64
	var wg sync.WaitGroup
	churnErr := make(chan error, len(churners))
	for i, c := range churners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var v any
				var err error
				if n%3 == 0 {
					var tx *sql.Tx
					if tx, err = c.conn.BeginTx(ctx, nil); err == nil {
						err = tx.QueryRowContext(ctx, "SELECT SESSION_CONTEXT(N'TenantId')").Scan(&v)
						tx.Rollback()
					}
				} else {
					err = c.conn.QueryRowContext(ctx, "SELECT SESSION_CONTEXT(N'TenantId')").Scan(&v)
				}
				if err == nil && v != nil {
					err = fmt.Errorf("reads another client's session context %v", v)
				}
				if err != nil {
					churnErr <- fmt.Errorf("churner %d: %w", i, err)
					return
				}
				churned.Add(1)
			}
		}()
	}

	var readers sync.WaitGroup
	for _, cc := range clients {
		readers.Add(1)
		go func() {
			defer readers.Done()
			first := 0
			for n := range 30 {
				var got []byte
				var spid int
				if err := cc.c.conn.QueryRowContext(ctx, cc.read).Scan(&got, &spid); err != nil {
					t.Errorf("%s read %d: %v", cc.name, n, err)
					return
				}
				// CONTEXT_INFO() may come back padded with zeros.
				if string(bytes.TrimRight(got, "\x00")) != cc.want {
					t.Errorf("%s read %d on SPID %d: %q, want %q", cc.name, n, spid, got, cc.want)
					return
				}
				if first == 0 {
					first = spid
				} else if spid != first {
					t.Errorf("%s moved from SPID %d to %d", cc.name, first, spid)
					return
				}
			}
		}()
	}
	readers.Wait()
	close(stop)
	wg.Wait()
	close(churnErr)
	for err := range churnErr {
		t.Error(err)
	}
	if churned.Load() == 0 {
		t.Fatal("the churners ran nothing: the test proves nothing")
	}
	t.Logf("%d churn requests ran beside the pinned clients", churned.Load())
	waitStat(t, st.envoy, pinned, 3)
	for _, cc := range clients {
		cc.c.close()
	}
	waitStat(t, st.envoy, pinned, 0)
}

// Session mode: the session owns its backend anyway, so nothing moves; the pin reason is
// still counted, as the others are, for judging what transaction pooling would pin.
func TestSessionModeCountsSessionContextPin(t *testing.T) {
	st := startTDSStack(t, tdsStackOptions{capacity: 2, leg: "module"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const pinned = "tdspool.bucket.bucket-001.pinned_session_context"
	c := mustTxClient(t, st)
	if _, err := c.conn.ExecContext(ctx, "sp_set_session_context",
		sql.Named("key", "TenantId"), sql.Named("value", "tenant-s"), sql.Named("read_only", 1)); err != nil {
		t.Fatalf("RPC sp_set_session_context: %v", err)
	}
	waitStat(t, st.envoy, pinned, 1)
	var got string
	if err := c.conn.QueryRowContext(ctx, "SELECT CAST(SESSION_CONTEXT(N'TenantId') AS nvarchar(64))").Scan(&got); err != nil || got != "tenant-s" {
		t.Fatalf("SESSION_CONTEXT = %q, %v", got, err)
	}
	c.close()
	waitStat(t, st.envoy, pinned, 0)
}
