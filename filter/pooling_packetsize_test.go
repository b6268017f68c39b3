package filter

import (
	"strings"
	"testing"
	"time"

	"github.com/tdspool/tdspool/filter/backend"
	"github.com/tdspool/tdspool/tds"
)

// A pooled bucket's backends log in, and so its clients are given, a packet size of at most
// 16384 (one TLS record), even when listener.max_packet_size allows 32767 (its default):
// mssql-jdbc refuses a TDS 7 TLS session whose negotiated packet size is larger ("SSL
// encryption cannot be used with a network packet size larger than 16384 bytes"), so every
// JDBC client with encrypt=true, the driver's default, failed on a pooled bucket.
func TestPooledPacketSizeFitsATLSRecord(t *testing.T) {
	for _, tc := range []struct {
		listenerMax string // "" leaves the default (32767)
		want        uint32
	}{
		{"", 16384},
		{`, "max_packet_size": 32767`, 16384},
		{`, "max_packet_size": 8192`, 8192},
	} {
		cfg := strings.Replace(pooledConfig, `, "max_packet_size": 8192`, tc.listenerMax, 1)
		h := newHarness(t, cfg)
		var dialed []*fakeBackend
		h.f.dial = func(tg backend.Target, hd backend.Handler) backendConn {
			fb := &fakeBackend{target: tg, h: hd}
			dialed = append(dialed, fb)
			return fb
		}
		c := h.connect()
		c.fromClient(preloginMsg(tds.EncryptOff))
		c.fromClient(loginFor("app", "pw"))
		for deadline := time.Now().Add(2 * time.Second); len(dialed) == 0 && time.Now().Before(deadline); {
			c.conn.RunPosted()
			time.Sleep(time.Millisecond)
		}
		if len(dialed) != 1 {
			t.Fatalf("max_packet_size%s: no backend dialed", tc.listenerMax)
		}
		dialed[0].h.Ready(&tds.Prelogin{}, tds.EncryptionNone)
		c.waitPosted(time.Second)
		l, err := tds.DecodeLogin7(dialed[0].login[tds.HeaderSize:])
		if err != nil {
			t.Fatal(err)
		}
		if l.PacketSize != tc.want {
			t.Errorf("max_packet_size%s: backend login asks for packet size %d, want %d", tc.listenerMax, l.PacketSize, tc.want)
		}
	}
}
