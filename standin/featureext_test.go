package standin

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// A LOGIN7 with FeatureExt gets FEATUREEXTACK after LOGINACK, as from SQL Server 2022:
// SESSIONRECOVERY (the connection resiliency of mssql-jdbc, SqlClient and ODBC) and
// UTF8_SUPPORT are acknowledged when asked, nothing else is; a LOGIN7 without FeatureExt gets
// no FEATUREEXTACK. Before, no login got one, so a proxy that must not acknowledge
// SESSIONRECOVERY for pooled sessions could not be told from one that passes it on.
func TestFeatureExtAck(t *testing.T) {
	srv, err := New(Config{Users: map[string]string{"demo": "pw"}, Databases: []string{"tenant_a"}, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	login := func(features []tds.Feature) *tds.LoginReply {
		nc, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		pre := &tds.Prelogin{HasVersion: true, HasEncryption: true, Encryption: tds.EncryptNotSup}
		nc.Write(tds.AppendPackets(nil, tds.PacketPrelogin, 0, pre.AppendPrelogin(nil), 4096))
		if _, _, _, err := readMessage(nc, 4096, 1<<16); err != nil {
			t.Fatal(err)
		}
		l := &tds.Login7{TDSVersion: tds.TDSVersion74, PacketSize: 4096, OptionFlags2: tds.Login7ODBC,
			UserName: "demo", Password: tds.NewPassword("pw"), Database: "tenant_a", Features: features}
		if len(features) > 0 {
			l.OptionFlags3 |= tds.Login7Extension
		}
		nc.Write(tds.AppendPackets(nil, tds.PacketLogin7, 0, l.AppendLogin7(nil), 4096))
		_, _, reply, err := readMessage(nc, 4096, 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		r, err := tds.ParseLoginReply(reply)
		if err != nil {
			t.Fatalf("login reply: %v", err)
		}
		return r
	}
	for _, tc := range []struct {
		name  string
		asked []tds.Feature
		want  string
	}{
		{"no FeatureExt", nil, "[]"},
		{"session recovery", []tds.Feature{{ID: tds.FeatureSessionRecovery, Data: []byte{0, 0, 0, 0}}}, "[SESSIONRECOVERY]"},
		{"as mssql-jdbc asks", []tds.Feature{{ID: tds.FeatureSessionRecovery, Data: []byte{0, 0, 0, 0}},
			{ID: tds.FeatureDataClassification, Data: []byte{2}}, {ID: tds.FeatureUTF8Support}, {ID: tds.FeatureJSONSupport, Data: []byte{1}}},
			"[SESSIONRECOVERY UTF8_SUPPORT]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fmt.Sprint(login(tc.asked).Acked); got != tc.want {
				t.Errorf("acknowledged %s, want %s", got, tc.want)
			}
		})
	}
}
