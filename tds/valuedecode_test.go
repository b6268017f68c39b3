package tds

import (
	"bytes"
	"encoding/binary"
	"math/big"
	"testing"
	"time"
)

func TestRPCParamDecode(t *testing.T) {
	le := binary.LittleEndian
	dto := time.Date(2024, 5, 6, 7, 8, 9, 123456700, time.FixedZone("", -150*60))
	type tc struct {
		name string
		ti   TypeInfo
		v    any    // encoded with AppendValue when raw is nil
		raw  []byte // value bytes as on the wire
		want any
	}
	tests := []tc{
		{"int1", IntNType(1), int64(200), nil, int64(200)},
		{"int2", IntNType(2), int64(-3), nil, int64(-3)},
		{"int4", IntNType(4), int64(-70000), nil, int64(-70000)},
		{"int8", IntNType(8), int64(-1 << 40), nil, int64(-1 << 40)},
		{"int4 fixed", TypeInfo{Type: TypeInt4}, int64(9), nil, int64(9)},
		{"bitn", BitNType(), true, nil, true},
		{"flt4", FltNType(4), float32(1.5), nil, 1.5},
		{"flt8", FltNType(8), 2.25, nil, 2.25},
		{"decimal", DecimalNType(10, 4), "-12.34", nil, "-12.3400"},
		{"decimal small", DecimalNType(5, 3), "0.005", nil, "0.005"},
		{"guid", GUIDType(), "6F9619FF-8B86-D011-B42D-00C04FC964FF", nil, "6F9619FF-8B86-D011-B42D-00C04FC964FF"},
		{"date", DateNType(), time.Date(2001, 2, 3, 0, 0, 0, 0, time.UTC), nil, time.Date(2001, 2, 3, 0, 0, 0, 0, time.UTC)},
		{"datetime2", DateTime2NType(7), time.Date(2001, 2, 3, 4, 5, 6, 789, time.UTC), nil, time.Date(2001, 2, 3, 4, 5, 6, 700, time.UTC)},
		{"time3", TypeInfo{Type: TypeTimeN, Scale: 3}, time.Date(1, 1, 1, 13, 14, 15, 16e6, time.UTC), nil, time.Date(1, 1, 1, 13, 14, 15, 16e6, time.UTC)},
		{"nvarchar", NVarCharType(10), "héllo😀", nil, "héllo😀"},
		{"nvarchar max", NVarCharType(0), "long", nil, "long"},
		{"varchar", TypeInfo{Type: TypeBigVarChar, MaxLen: 10}, "abc", nil, "abc"},
		{"varbinary", VarBinaryType(10), []byte{1, 2}, nil, []byte{1, 2}},
		{"varbinary max", VarBinaryType(0), []byte{3}, nil, []byte{3}},
		{"empty nvarchar", NVarCharType(10), "", nil, ""},
		{"null intn", IntNType(4), nil, nil, nil},
		{"null nvarchar", NVarCharType(10), nil, nil, nil},
		{"null plp", NVarCharType(0), nil, nil, nil},
		// Encoded by hand: types AppendValue does not write.
		{"money", TypeInfo{Type: TypeMoneyN, MaxLen: 8}, nil, append([]byte{8}, 0xFF, 0xFF, 0xFF, 0xFF, 0x60, 0x79, 0xFE, 0xFF), "-10.0000"},
		{"money big", TypeInfo{Type: TypeMoney}, nil, []byte{1, 0, 0, 0, 0, 0, 0, 0}, "429496.7296"},
		{"smallmoney", TypeInfo{Type: TypeMoney4}, nil, le.AppendUint32(nil, uint32(12345)), "1.2345"},
		{"datetime", TypeInfo{Type: TypeDateTimeN, MaxLen: 8}, nil, append([]byte{8}, le.AppendUint32(le.AppendUint32(nil, 1), 300*61)...), time.Date(1900, 1, 2, 0, 1, 1, 0, time.UTC)},
		{"datetime before 1900", TypeInfo{Type: TypeDateTime}, nil, le.AppendUint32(le.AppendUint32(nil, 0xFFFFFFFF), 150), time.Date(1899, 12, 31, 0, 0, 0, 5e8, time.UTC)},
		{"smalldatetime", TypeInfo{Type: TypeDateTim4}, nil, le.AppendUint16(le.AppendUint16(nil, 2), 61), time.Date(1900, 1, 3, 1, 1, 0, 0, time.UTC)},
		{"datetimeoffset", TypeInfo{Type: TypeDateTimeOffsetN, Scale: 7}, nil,
			append(append([]byte{10}, appendDate(appendTime(nil, dto.UTC(), 7), dto.UTC())...), le.AppendUint16(nil, uint16(0x10000-150))...), dto},
		{"ntext", TypeInfo{Type: TypeNText, MaxLen: 0x7FFFFFFE, Collation: CollationLatin1General}, nil, append(le.AppendUint32(nil, 4), 'h', 0, 'i', 0), "hi"},
		{"null text", TypeInfo{Type: TypeText, MaxLen: 0x7FFFFFFE, Collation: CollationLatin1General}, nil, le.AppendUint32(nil, 0xFFFFFFFF), nil},
		{"xml", TypeInfo{Type: TypeXML}, nil, append(append(le.AppendUint64(nil, 4), le.AppendUint32(nil, 4)...), '<', 0, '>', 0, 0, 0, 0, 0), "<>"},
		{"legacy varchar empty is null", TypeInfo{Type: TypeVarChar, MaxLen: 10}, nil, []byte{0}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tt.raw
			if raw == nil {
				var err error
				if raw, err = AppendValue(nil, &tt.ti, tt.v); err != nil {
					t.Fatal(err)
				}
			}
			// Through the wire: encode a whole RPC and decode it.
			req := &RPCRequest{Calls: []RPCCall{{ProcName: "p", Params: []RPCParam{{Name: "@x", Type: tt.ti, Value: raw}}}}}
			got, err := DecodeRPC(req.AppendRPC(nil))
			if err != nil {
				t.Fatal(err)
			}
			v, err := got.Calls[0].Params[0].Decode()
			if err != nil {
				t.Fatal(err)
			}
			switch x := v.(type) {
			case Decimal:
				v = x.String()
			case GUID:
				v = x.String()
			}
			switch w := tt.want.(type) {
			case time.Time:
				tv, ok := v.(time.Time)
				_, wo := w.Zone()
				_, to := tv.Zone()
				if !ok || !tv.Equal(w) || wo != to {
					t.Fatalf("got %v, want %v", v, w)
				}
			case []byte:
				if b, ok := v.([]byte); !ok || !bytes.Equal(b, w) {
					t.Fatalf("got %v, want %v", v, w)
				}
			default:
				if v != tt.want {
					t.Fatalf("got %#v, want %#v", v, tt.want)
				}
			}
		})
	}
}

func TestDecodeValueDataErrors(t *testing.T) {
	for _, c := range []struct {
		ti TypeInfo
		p  []byte
	}{
		{IntNType(4), []byte{1, 2, 3}},
		{GUIDType(), []byte{1}},
		{DateTime2NType(7), []byte{1, 2, 3}},
		{TypeInfo{Type: TypeTimeN, Scale: 9}, []byte{1, 2, 3, 4, 5}},
		{TypeInfo{Type: TypeMoneyN}, []byte{1, 2}},
		{TypeInfo{Type: TypeVariant}, []byte{1}},
	} {
		if v, err := DecodeValueData(&c.ti, c.p); err == nil {
			t.Errorf("%s % x: got %v, want error", c.ti, c.p, v)
		}
	}
}

func TestFormatScaled(t *testing.T) {
	for _, c := range []struct {
		u     int64
		scale int
		want  string
	}{{0, 0, "0"}, {5, 2, "0.05"}, {-5, 2, "-0.05"}, {12345, 2, "123.45"}, {-7, 0, "-7"}, {100, 4, "0.0100"}} {
		if got := FormatScaled(big.NewInt(c.u), c.scale); got != c.want {
			t.Errorf("FormatScaled(%d, %d) = %q, want %q", c.u, c.scale, got, c.want)
		}
	}
	if s := (Decimal{}).String(); s != "0" {
		t.Errorf("zero Decimal = %q", s)
	}
}
