package filter

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/internal/testcert"
	"github.com/tdspool/tdspool/tds"
)

// writeSelfSignedCert writes a throwaway certificate and key for the listener.
func writeSelfSignedCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := testcert.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// tlsHandshake runs the client side of the in-band handshake against the session.
func (c *client) tlsHandshake(t *testing.T, mode tds.TLSMode) *tds.TLSAdapter {
	t.Helper()
	ca := tds.NewTLSClient(&tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}, mode, 4096)
	t.Cleanup(ca.Close)
	for i := 0; i < 20 && !ca.HandshakeDone(); i++ {
		if wire := ca.TakeWire(); len(wire) > 0 {
			c.fromClient(wire)
		}
		c.waitPosted(2 * time.Second)
		if c.conn.Closed {
			t.Fatalf("closed during TLS: %s %v", c.conn.CloseDetails, c.conn.Logs)
		}
		out := c.conn.ToClient
		c.conn.ToClient = nil
		if err := ca.Feed(out); err != nil {
			t.Fatalf("client TLS: %v", err)
		}
	}
	if !ca.HandshakeDone() {
		t.Fatal("handshake did not finish")
	}
	return ca
}

func TestSessionTerminatesClientTLS(t *testing.T) {
	for _, tc := range []struct {
		name      string
		policy    string
		clientEnc tds.EncryptOption
		mode      tds.TLSMode
	}{
		{"login-only", "LOGIN_ONLY_ALLOWED", tds.EncryptOff, tds.TLSModeLoginOnly},
		{"full on request", "LOGIN_ONLY_ALLOWED", tds.EncryptOn, tds.TLSModeFull},
		{"full required", "REQUIRE", tds.EncryptOff, tds.TLSModeFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, key := writeSelfSignedCert(t)
			h := newHarness(t, fmt.Sprintf(`{"listener": {"encryption": %q, "tls_cert_file": %q, "tls_key_file": %q},
			  "buckets": [{"name": "b1", "cluster": "c1", "max_connections": 2}], "default_bucket": "b1"}`, tc.policy, cert, key))
			c := h.connect()
			c.fromClient(preloginMsg(tc.clientEnc))
			var r tds.Reassembler
			r.Feed(c.conn.ToClient)
			msg, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			reply, err := tds.DecodePrelogin(msg.Payload)
			if err != nil {
				t.Fatal(err)
			}
			if got := tds.ClientEncryptionResult(tc.clientEnc, reply.Encryption); (got == tds.EncryptionFull) != (tc.mode == tds.TLSModeFull) {
				t.Fatalf("reply encryption %v gives the client %s", reply.Encryption, got)
			}
			c.conn.ToClient = nil
			ca := c.tlsHandshake(t, tc.mode)

			// LOGIN7 through TLS.
			if err := ca.Write(login7Msg("app", "", "proxy")); err != nil {
				t.Fatal(err)
			}
			if tc.mode == tds.TLSModeLoginOnly {
				ca.SwitchToClear()
			}
			c.fromClient(ca.TakeWire())
			c.waitPosted(time.Second)
			if c.conn.Closed || c.conn.FilterState[ClusterFilterStateKey] != "c1" {
				t.Fatalf("login through TLS not routed: closed=%v %s %v", c.conn.Closed, c.conn.CloseDetails, c.conn.Logs)
			}
			// The backend speaks plaintext; the client sees TLS records in full mode.
			c.conn.Read = nil
			c.fromBackend(backendPreloginReply())
			resp := loginResponse(true)
			out := c.fromBackend(resp)
			if tc.mode == tds.TLSModeFull {
				if err := ca.Feed(out); err != nil {
					t.Fatal(err)
				}
				out = ca.TakePlain()
			}
			if string(out) != string(resp) {
				t.Fatalf("client did not get the login response intact")
			}
			// A request from the client reaches the backend as plaintext.
			batch := tds.AppendPackets(nil, tds.PacketSQLBatch, 0, []byte("select 1"), 4096)
			wire := batch
			if tc.mode == tds.TLSModeFull {
				if err := ca.Write(batch); err != nil {
					t.Fatal(err)
				}
				wire = ca.TakeWire()
			}
			c.conn.Read = append(c.conn.Read, wire...)
			if st := c.s.OnRead(len(c.conn.Read), false); st != host.Continue || string(c.conn.Read) != string(batch) {
				t.Fatalf("upstream got % x (status %s), want the plaintext batch", c.conn.Read, st)
			}
			c.s.OnEvent(host.RemoteClose)
			if h.metrics.Value("bucket.b1.slot_released_total") != 1 {
				t.Fatal("slot not released")
			}
		})
	}
}

func TestSessionRefusesPlaintextWhenPolicyNeedsTLS(t *testing.T) {
	cert, key := writeSelfSignedCert(t)
	h := newHarness(t, fmt.Sprintf(`{"listener": {"encryption": "LOGIN_ONLY_ALLOWED", "tls_cert_file": %q, "tls_key_file": %q},
	  "buckets": [{"name": "b1", "cluster": "c1", "max_connections": 2}], "default_bucket": "b1"}`, cert, key))
	c := h.connect()
	c.fromClient(preloginMsg(tds.EncryptNotSup))
	if !c.conn.Closed || h.metrics.Value("refused_policy_total") != 1 {
		t.Fatalf("a client that cannot encrypt was not refused (closed=%v)", c.conn.Closed)
	}
}
