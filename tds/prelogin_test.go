package tds

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestPreloginDecodeServerReply(t *testing.T) {
	// go-mssqldb's mock server reply (tds_login_test.go), packet header stripped:
	// VERSION 12.0.2000, ENCRYPTION=NOT_SUP, FEDAUTHREQUIRED=1.
	payload := unhex(t, `00 00 10 00 06 01 00 16 00 01 06 00 17 00 01 FF 0C 00 07 D0 00 00 02 01`)
	p, err := DecodePrelogin(payload)
	if err != nil {
		t.Fatal(err)
	}
	if !p.HasVersion || p.Version != 0x0C0007D0 || p.Encryption != EncryptNotSup || !p.HasFedAuthRequired || p.FedAuthRequired != 1 {
		t.Fatalf("%v", p)
	}
	if got := p.AppendPrelogin(nil); !bytes.Equal(got, payload) {
		t.Fatalf("re-encode\n got % X\nwant % X", got, payload)
	}
	if s := p.String(); !strings.Contains(s, "version=12.0.2000.0") || !strings.Contains(s, "encryption=NOT_SUP") {
		t.Fatal(s)
	}
}

func TestPreloginDecodeClient(t *testing.T) {
	// go-mssqldb client PRELOGIN from the same fixture (driver version zeroed):
	// VERSION, ENCRYPTION, INSTOPT, THREADID, MARS.
	payload := unhex(t, `00 00 1a 00 06 01 00 20 00 01 02 00 21 00 01 03 00 22 00 04 04 00 26 00
		01 ff 01 02 03 04 00 00 00 00 00 00 00 00 00`)
	p, err := DecodePrelogin(payload)
	if err != nil {
		t.Fatal(err)
	}
	want := &Prelogin{HasVersion: true, Version: 0x01020304, HasEncryption: true, Encryption: EncryptOff,
		HasInstance: true, HasThreadID: true, HasMARS: true}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("got %v want %v", p, want)
	}
	if got := p.AppendPrelogin(nil); !bytes.Equal(got, payload) {
		t.Fatalf("re-encode\n got % X\nwant % X", got, payload)
	}
}

func TestPreloginRoundTrip(t *testing.T) {
	tests := []*Prelogin{
		ServerPreloginReply(0x0F001234, EncryptOn),
		{HasVersion: true, Version: 0x10000FA0, SubBuild: 7, HasEncryption: true, Encryption: EncryptReq | EncryptClientCert,
			HasInstance: true, Instance: "MSSQLSERVER", HasThreadID: true, ThreadID: 1234, HasMARS: true, MARS: true,
			HasTraceID: true, TraceID: bytes.Repeat([]byte{0xAB}, 36), HasFedAuthRequired: true, FedAuthRequired: 1,
			HasNonce: true, Nonce: bytes.Repeat([]byte{1}, 32), Extra: []PreloginOption{{Token: 0x09, Data: []byte{1, 2}}}},
		{HasThreadID: true, ThreadIDEmpty: true},
		{},
	}
	for _, p := range tests {
		b := p.AppendPrelogin(nil)
		got, err := DecodePrelogin(b)
		if err != nil {
			t.Fatalf("%v: %v", p, err)
		}
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("round trip\n got %v\nwant %v", got, p)
		}
	}
	// The server reply layout is byte-exact with what SQL Server-compatible
	// servers send: VERSION, ENCRYPTION, INSTOPT(00), MARS(00).
	want := unhex(t, `00 00 15 00 06 01 00 1B 00 01 02 00 1C 00 01 04 00 1D 00 01 FF
		0C 00 07 D0 00 00 02 00 00`)
	if got := ServerPreloginReply(0x0C0007D0, EncryptNotSup).AppendPrelogin(nil); !bytes.Equal(got, want) {
		t.Fatalf("server reply\n got % X\nwant % X", got, want)
	}
}

func TestPreloginErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ``},
		{"no terminator", `00 00 05 00 00`},
		{"truncated entry", `00 00 06`},
		{"out of range", `01 00 06 00 05 FF 00`},
		{"short version", `00 00 06 00 02 FF 00 00`},
		{"short encryption", `01 00 06 00 00 FF`},
	}
	for _, tt := range tests {
		if _, err := DecodePrelogin(unhex(t, tt.in)); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func TestNegotiateEncryption(t *testing.T) {
	type row struct {
		client, policy EncryptOption
		reply          EncryptOption
		result         EncryptionResult
	}
	// The matrix of MS-TDS §2.2.6.5.
	tests := []row{
		{EncryptOff, EncryptOff, EncryptOff, EncryptionLoginOnly},
		{EncryptOff, EncryptOn, EncryptReq, EncryptionFull},
		{EncryptOff, EncryptNotSup, EncryptNotSup, EncryptionNone},
		{EncryptOff, EncryptReq, EncryptReq, EncryptionFull},
		{EncryptOn, EncryptOff, EncryptOn, EncryptionFull},
		{EncryptOn, EncryptOn, EncryptOn, EncryptionFull},
		{EncryptOn, EncryptNotSup, EncryptNotSup, EncryptionRefuse},
		{EncryptOn, EncryptReq, EncryptOn, EncryptionFull},
		{EncryptReq, EncryptOff, EncryptOn, EncryptionFull},
		{EncryptNotSup, EncryptOff, EncryptNotSup, EncryptionNone},
		{EncryptNotSup, EncryptOn, EncryptReq, EncryptionRefuse},
		{EncryptNotSup, EncryptNotSup, EncryptNotSup, EncryptionNone},
		{EncryptNotSup, EncryptReq, EncryptReq, EncryptionRefuse},
		// Client-cert flag does not change the matrix and is not echoed.
		{EncryptOn | EncryptClientCert, EncryptOff, EncryptOn, EncryptionFull},
		// Unknown values are refused, not guessed.
		{EncryptStrict, EncryptOff, EncryptNotSup, EncryptionRefuse},
		{EncryptOff, EncryptOption(9), EncryptNotSup, EncryptionRefuse},
	}
	for _, tt := range tests {
		reply, res := NegotiateEncryption(tt.client, tt.policy)
		if reply != tt.reply || res != tt.result {
			t.Errorf("client %s policy %s: got %s/%s want %s/%s", tt.client, tt.policy, reply, res, tt.reply, tt.result)
		}
		// Whatever the server decides, a conforming client reaches the same
		// conclusion from the reply (except refusals, where one side quits).
		if res != EncryptionRefuse {
			if got := ClientEncryptionResult(tt.client, reply); got != res {
				t.Errorf("client view %s/%s: %s want %s", tt.client, reply, got, res)
			}
		}
	}
}

// TestEncryptionDriverQuirks pins down what each driver's setting leads to
// under each server policy: which byte each setting sends, and that go-mssqldb and FreeTDS
// start TLS for any reply but NOT_SUP.
func TestEncryptionDriverQuirks(t *testing.T) {
	tests := []struct {
		driver string
		sends  EncryptOption
		policy EncryptOption
		want   EncryptionResult
		why    string
	}{
		// go-mssqldb runs TLS whenever the reply is not NOT_SUP, so a
		// NOT_SUP ("encrypt=disable") client must get NOT_SUP back.
		{"go-mssqldb encrypt=disable", EncryptNotSup, EncryptOff, EncryptionNone, "reply must be NOT_SUP"},
		{"go-mssqldb default (false)", EncryptOff, EncryptOff, EncryptionLoginOnly, "first LOGIN7 packet in TLS"},
		{"go-mssqldb encrypt=true", EncryptOn, EncryptOff, EncryptionFull, ""},
		// tedious never does login-only: it sends ON by default; with
		// encrypt=false it sends NOT_SUP.
		{"tedious default", EncryptOn, EncryptOff, EncryptionFull, ""},
		{"tedious encrypt=false", EncryptNotSup, EncryptOff, EncryptionNone, ""},
		{"tedious encrypt=false, server REQ", EncryptNotSup, EncryptReq, EncryptionRefuse, ""},
		// FreeTDS: "encryption = off" sends NOT_SUP; default "request" sends OFF.
		{"freetds encryption=off", EncryptNotSup, EncryptOff, EncryptionNone, ""},
		{"freetds default", EncryptOff, EncryptOff, EncryptionLoginOnly, ""},
		{"freetds require", EncryptOn, EncryptNotSup, EncryptionRefuse, ""},
		// pytds without cafile sends NOT_SUP.
		{"pytds no cafile", EncryptNotSup, EncryptOn, EncryptionRefuse, ""},
		// JDBC encrypt=false sends OFF; the server policy ON forces full.
		{"jdbc encrypt=false", EncryptOff, EncryptOn, EncryptionFull, ""},
	}
	for _, tt := range tests {
		reply, got := NegotiateEncryption(tt.sends, tt.policy)
		if got != tt.want {
			t.Errorf("%s under %s: %s want %s", tt.driver, tt.policy, got, tt.want)
		}
		if tt.sends == EncryptNotSup && got == EncryptionNone && reply != EncryptNotSup {
			t.Errorf("%s: NOT_SUP client answered %s", tt.driver, reply)
		}
	}
}

func FuzzPrelogin(f *testing.F) {
	f.Add(ServerPreloginReply(0x0C0007D0, EncryptOff).AppendPrelogin(nil))
	f.Add((&Prelogin{HasVersion: true, HasTraceID: true, TraceID: make([]byte, 36), HasNonce: true, Nonce: make([]byte, 32),
		HasThreadID: true, ThreadID: 5, Extra: []PreloginOption{{Token: 0x20}}}).AppendPrelogin(nil))
	f.Add([]byte{0xFF})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePrelogin(b)
		if err != nil {
			return
		}
		_ = p.String()
		// Decode(Encode(p)) must equal p (encoding normalises layout, so
		// compare the decoded forms, not the bytes).
		b2 := p.AppendPrelogin(nil)
		p2, err := DecodePrelogin(b2)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		b3 := p2.AppendPrelogin(nil)
		if !bytes.Equal(b2, b3) {
			t.Fatalf("not stable:\n% X\n% X", b2, b3)
		}
	})
}
