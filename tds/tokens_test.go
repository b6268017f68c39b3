package tds

import (
	"bytes"
	"math/big"
	"reflect"
	"testing"
	"time"
)

func TestLoginAckDoneByteExact(t *testing.T) {
	// go-mssqldb's mock login response (tds_login_test.go), header stripped.
	want := unhex(t, `AD 32 00 01 74 00 00 04
		14 4d 00 69 00 63 00 72 00 6f 00 73 00 6f 00 66 00 74 00 20 00 53 00 51 00 4c 00 20 00 53 00 65
		00 72 00 76 00 65 00 72 00 0c 00 07 d0 fd 00 00 00 00 00 00 00 00 00 00 00 00`)
	ack := LoginAck{Interface: 1, TDSVersion: TDSVersion74, ProgName: "Microsoft SQL Server", ProgVersion: 0x0C0007D0}
	got := Done{}.AppendDone(ack.AppendLoginAck(nil))
	if !bytes.Equal(got, want) {
		t.Fatalf("\n got % X\nwant % X", got, want)
	}
	a, n, err := DecodeLoginAck(got)
	if err != nil || a != ack || n != 0x35 {
		t.Fatalf("%v %d %v", a, n, err)
	}
	d, n2, err := DecodeDone(got[n:])
	if err != nil || d != (Done{Token: TokenDone}) || n2 != 13 {
		t.Fatalf("%v %v", d, err)
	}
}

func TestEnvChangeLayouts(t *testing.T) {
	tests := []struct {
		name string
		e    EnvChange
		want string
	}{
		{"database", EnvChangeDatabase("db", "master"), `E3 13 00 01 02 64 00 62 00 06 6D 00 61 00 73 00 74 00 65 00 72 00`},
		{"packet size", EnvChangePacketSize(4096, 512), `E3 11 00 04 04 34 00 30 00 39 00 36 00 03 35 00 31 00 32 00`},
		{"collation", EnvChangeCollation(CollationLatin1General), `E3 08 00 07 05 09 04 D0 00 34 00`},
		{"begin tran", EnvChangeBeginTran(0x0102030405060708), `E3 0B 00 08 08 08 07 06 05 04 03 02 01 00`},
		{"commit tran", EnvChangeCommitTran(1), `E3 0B 00 09 00 08 01 00 00 00 00 00 00 00`},
		{"rollback tran", EnvChangeRollbackTran(1), `E3 0B 00 0A 00 08 01 00 00 00 00 00 00 00`},
		{"reset ack", EnvChangeResetAck(), `E3 03 00 12 00 00`},
		{"routing", EnvChangeRouting("h", 1433), `E3 0C 00 14 07 00 00 99 05 01 00 68 00 00 00`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.e.AppendEnvChange(nil)
			if want := unhex(t, tt.want); !bytes.Equal(got, want) {
				t.Fatalf("\n got % X\nwant % X", got, want)
			}
			back, n, err := DecodeEnvChange(got)
			if err != nil || n != len(got) {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(norm(back), norm(tt.e)) {
				t.Fatalf("round trip %v != %v", back, tt.e)
			}
		})
	}
	if d, ok := EnvChangeCommitTran(77).Descriptor(); !ok || d != 77 {
		t.Fatal("descriptor")
	}
	if n, ok := EnvChangePacketSize(8000, 4096).PacketSize(); !ok || n != 8000 {
		t.Fatal("packet size")
	}
}

func norm(e EnvChange) EnvChange {
	if len(e.NewBytes) == 0 {
		e.NewBytes = nil
	}
	if len(e.OldBytes) == 0 {
		e.OldBytes = nil
	}
	if len(e.RawOld) == 0 {
		e.RawOld = nil
	}
	return e
}

func TestErrorMessage(t *testing.T) {
	b := ErrorMessage(18456, 1, 14, "Login failed for user 'x'.", "srv", "", 1)
	m, n, err := DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	want := ServerMessage{Token: TokenError, Number: 18456, State: 1, Class: 14, Text: "Login failed for user 'x'.", Server: "srv", Line: 1}
	if m != want {
		t.Fatalf("%v", m)
	}
	d, _, err := DecodeDone(b[n:])
	if err != nil || d.Status != DoneError || d.Token != TokenDone {
		t.Fatalf("%v %v", d, err)
	}
	// Layout: AA len(2) number(4) state class US_VARCHAR B_VARCHAR B_VARCHAR line(4).
	small := ServerMessage{Number: 1, State: 2, Class: 16, Text: "x", Server: "s", Proc: "", Line: 3}.AppendMessage(nil)
	if w := unhex(t, `AA 12 00 01 00 00 00 02 10 01 00 78 00 01 73 00 00 03 00 00 00`); !bytes.Equal(small, w) {
		t.Fatalf("% X", small)
	}
	info := ServerMessage{Number: 5701, Class: 0}.AppendMessage(nil)
	if TokenType(info[0]) != TokenInfo {
		t.Fatal("class 0 should default to INFO")
	}
}

func TestReturnStatusAndFeatureAck(t *testing.T) {
	if got := AppendReturnStatus(nil, -1); !bytes.Equal(got, []byte{0x79, 0xFF, 0xFF, 0xFF, 0xFF}) {
		t.Fatalf("% X", got)
	}
	ack := FeatureExtAck{Features: []Feature{{FeatureUTF8Support, []byte{1}}, {FeatureFedAuth, nil}}}
	b := ack.AppendFeatureExtAck(nil)
	if w := unhex(t, `AE 0A 01 00 00 00 01 02 00 00 00 00 FF`); !bytes.Equal(b, w) {
		t.Fatalf("% X", b)
	}
	back, n, err := DecodeFeatureExtAck(b)
	if err != nil || n != len(b) || len(back.Features) != 2 || back.Features[0].Data[0] != 1 {
		t.Fatalf("%v %v", back, err)
	}
}

func TestColMetadataRowRoundTrip(t *testing.T) {
	cols := []Column{
		{Flags: ColNullable, Type: IntNType(4), Name: "id"},
		{Flags: ColNullable, Type: IntNType(8), Name: "big"},
		{Flags: ColNullable, Type: BitNType(), Name: "b"},
		{Flags: ColNullable, Type: FltNType(8), Name: "f"},
		{Flags: ColNullable, Type: DecimalNType(18, 2), Name: "d"},
		{Flags: ColNullable, Type: NVarCharType(50), Name: "s"},
		{Flags: ColNullable, Type: NVarCharType(0), Name: "smax"},
		{Flags: ColNullable, Type: VarBinaryType(10), Name: "vb"},
		{Flags: ColNullable, Type: VarBinaryType(0), Name: "vbmax"},
		{Flags: ColNullable, Type: DateTime2NType(7), Name: "dt2"},
		{Flags: ColNullable, Type: GUIDType(), Name: "g"},
		{Type: TypeInfo{Type: TypeInt4, MaxLen: 4}, Name: "i4"},
		{Type: TypeInfo{Type: TypeNText, MaxLen: 0x7FFFFFFE, Collation: CollationLatin1General}, TableName: []string{"dbo", "t"}, Name: "nt"},
		{Type: TypeInfo{Type: TypeXML, MaxLen: MaxLenPLP, SchemaPresent: true, DBName: "db", OwningSchema: "dbo", SchemaCollection: "c"}, Name: "x"},
		{Type: TypeInfo{Type: TypeUDT, MaxLen: 0xFFFF, DBName: "db", OwningSchema: "sys", TypeName: "geography", SchemaCollection: "asm"}, Name: "u"},
	}
	md := ColMetadata{Columns: cols}
	b := md.AppendColMetadata(nil)
	back, n, err := DecodeColMetadata(b)
	if err != nil || n != len(b) {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, md) {
		t.Fatalf("\n got %v\nwant %v", back, md)
	}
	for i := 0; i < n; i++ {
		if _, _, err := DecodeColMetadata(b[:i]); err != ErrShortBuffer {
			t.Fatalf("prefix %d: %v", i, err)
		}
	}
	ts := time.Date(2024, 2, 29, 13, 14, 15, 123456700, time.UTC)
	row := []any{int32(7), int64(-1 << 40), true, 3.5, "-12.34", "héllo", "long text", []byte{1, 2}, []byte{}, ts,
		"6F9619FF-8B86-D011-B42D-00C04FC964FF", int32(9), nil, nil, nil}
	rb, err := AppendNBCRow(nil, cols, row)
	if err != nil {
		t.Fatal(err)
	}
	// Decimal: sign 0 (negative), 8-byte magnitude 1234.
	if _, err := AppendRow(nil, cols[:1], []any{"x"}); err == nil {
		t.Fatal("type error expected")
	}
	d, err := AppendValue(nil, &cols[4].Type, big.NewInt(-1234))
	if err != nil || !bytes.Equal(d, unhex(t, `09 00 D2 04 00 00 00 00 00 00`)) {
		t.Fatalf("decimal % X %v", d, err)
	}
	g, _ := AppendValue(nil, &cols[10].Type, "6F9619FF-8B86-D011-B42D-00C04FC964FF")
	if !bytes.Equal(g, unhex(t, `10 FF 19 96 6F 86 8B 11 D0 B4 2D 00 C0 4F C9 64 FF`)) {
		t.Fatalf("guid % X", g)
	}
	// datetime2(7): 5-byte time + 3-byte date.
	dt, _ := AppendValue(nil, &cols[9].Type, time.Date(1, 1, 2, 0, 0, 1, 0, time.UTC))
	if !bytes.Equal(dt, unhex(t, `08 80 96 98 00 00 01 00 00`)) {
		t.Fatalf("datetime2 % X", dt)
	}
	// The scanner must walk this row exactly (checked in scanner tests);
	// here just make sure it is non-trivial.
	if len(rb) < 50 {
		t.Fatalf("row too short: %d", len(rb))
	}
}
