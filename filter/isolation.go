package filter

import (
	"github.com/tdspool/tdspool/filter/pool"
	"github.com/tdspool/tdspool/filter/txpool"
	"github.com/tdspool/tdspool/tds"
)

// A reset (RESETCONNECTION, sp_reset_connection) restores every SET option of a session but
// its transaction isolation level: SQL Server keeps that, by design. So a session-pooled
// client that leaves its session at another level than READ COMMITTED would hand that level
// to the next client of its backend; such a backend is closed instead of pooled
// (pool.TaintIsolationLevel). The level is followed from the client's requests: SET
// TRANSACTION ISOLATION LEVEL in a batch whose statements all run, and a transaction-manager
// BEGIN's isolation byte; any SET of the level the proxy cannot follow (a variable, behind
// IF, in dynamic SQL), or one in a request whose response carried an ERROR, leaves it
// unknown, which counts as dirty. A client that sets READ COMMITTED back before it leaves
// (as connection pools like HikariCP do) leaves a clean backend.

// noteIsolation follows the session's isolation level through one client request (classify
// is the request classifier's error: a transaction-manager request it could not read may
// have set any level).
func (s *session) noteIsolation(m *tds.Message, f *tds.RequestFacts, complete bool, classify error) {
	r := &s.relay
	if m.Type == tds.PacketTransMgr && classify != nil {
		r.isolation = txpool.UnknownIsolation
		return
	}
	straight := false
	if m.Type == tds.PacketSQLBatch && complete && len(f.SetOptions) > 0 {
		if q, err := tds.DecodeSQLBatch(m.Payload); err == nil {
			straight = txpool.StraightLine(q.Text)
		}
	}
	before := r.isolation
	if before == "" {
		before = txpool.LoginIsolation
	}
	if after := txpool.IsolationAfterRequest(before, f, straight); after != before {
		r.isolation, r.isolationPending = after, true
	}
}

// isolationTaint taints the returned lease when the session's isolation level is not the
// login's, or not known.
func (s *session) isolationTaint(lease *pool.Lease[*pooledBackend]) {
	if iso := s.relay.isolation; iso != "" && iso != txpool.LoginIsolation {
		lease.Taint(pool.TaintIsolationLevel)
	}
}
