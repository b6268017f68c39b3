package tds

import (
	"math/big"
	"testing"
	"time"
)

// DATETIME, SMALLDATETIME, DATETIMEOFFSET and MONEY encoders: values come
// back through the decoder, and rows built with them scan cleanly.

func TestAppendValueLegacyTypes(t *testing.T) {
	dto := time.Date(2024, 2, 29, 23, 30, 0, 1234567e2, time.FixedZone("", 5*3600+45*60))
	tests := []struct {
		name string
		ti   TypeInfo
		in   any
		want any // decoded; Decimal as its string
	}{
		{"datetime", TypeInfo{Type: TypeDateTimeN, MaxLen: 8}, time.Date(2001, 2, 3, 4, 5, 6, 7e6, time.UTC), time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC).Add(2 * time.Second / 300)},
		{"datetime rounds to 1/300 s", TypeInfo{Type: TypeDateTime}, time.Date(2001, 2, 3, 4, 5, 6, 2e6, time.UTC), time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC).Add(time.Second / 300)},
		{"datetime rolls over midnight", TypeInfo{Type: TypeDateTime}, time.Date(2001, 2, 3, 23, 59, 59, 999e6, time.UTC), time.Date(2001, 2, 4, 0, 0, 0, 0, time.UTC)},
		{"datetime min", TypeInfo{Type: TypeDateTime}, time.Date(1753, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1753, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"datetime max", TypeInfo{Type: TypeDateTimeN, MaxLen: 8}, time.Date(9999, 12, 31, 23, 59, 59, 997e6, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Add(299 * time.Second / 300)},
		{"datetime wall clock", TypeInfo{Type: TypeDateTime}, time.Date(2001, 2, 3, 4, 5, 6, 0, time.FixedZone("", 3600)), time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)},
		{"smalldatetime", TypeInfo{Type: TypeDateTimeN, MaxLen: 4}, time.Date(2001, 2, 3, 4, 5, 29, 0, time.UTC), time.Date(2001, 2, 3, 4, 5, 0, 0, time.UTC)},
		{"smalldatetime rounds up", TypeInfo{Type: TypeDateTim4}, time.Date(2079, 6, 6, 23, 58, 30, 0, time.UTC), time.Date(2079, 6, 6, 23, 59, 0, 0, time.UTC)},
		{"datetimeoffset", TypeInfo{Type: TypeDateTimeOffsetN, Scale: 7}, dto, dto},
		{"datetimeoffset scale 0", TypeInfo{Type: TypeDateTimeOffsetN, Scale: 0}, time.Date(2020, 1, 1, 0, 0, 0, 0, time.FixedZone("", -8*3600)), time.Date(2020, 1, 1, 0, 0, 0, 0, time.FixedZone("", -8*3600))},
		{"money", TypeInfo{Type: TypeMoneyN, MaxLen: 8}, "-922337203685477.5808", "-922337203685477.5808"},
		{"money fixed", TypeInfo{Type: TypeMoney}, int64(12), "12.0000"},
		{"money from decimal", TypeInfo{Type: TypeMoneyN, MaxLen: 8}, Decimal{Unscaled: big.NewInt(-125), Scale: 2}, "-1.2500"},
		{"smallmoney", TypeInfo{Type: TypeMoneyN, MaxLen: 4}, "214748.3647", "214748.3647"},
		{"smallmoney fixed", TypeInfo{Type: TypeMoney4}, big.NewInt(-5), "-0.0005"},
		{"decimal from Decimal", DecimalNType(10, 2), Decimal{Unscaled: big.NewInt(-12500), Scale: 4}, "-1.25"},
		{"guid from GUID", GUIDType(), GUID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, "04030201-0605-0807-090A-0B0C0D0E0F10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := AppendValue(nil, &tt.ti, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			n, err := valueLen(b, &tt.ti)
			if err != nil || n != len(b) {
				t.Fatalf("valueLen = %d, %v; encoded %d bytes", n, err, len(b))
			}
			p := RPCParam{Type: tt.ti, Value: b}
			v, err := p.Decode()
			if err != nil {
				t.Fatal(err)
			}
			switch x := v.(type) {
			case Decimal:
				v = x.String()
			case GUID:
				v = x.String()
			}
			if w, ok := tt.want.(time.Time); ok {
				got, ok := v.(time.Time)
				_, wo := w.Zone()
				_, go_ := got.Zone()
				if !ok || !got.Equal(w) || wo != go_ {
					t.Fatalf("got %v, want %v", v, w)
				}
				return
			}
			if v != tt.want {
				t.Fatalf("got %#v, want %#v", v, tt.want)
			}
		})
	}
}

func TestAppendValueLegacyTypesRange(t *testing.T) {
	for _, c := range []struct {
		ti TypeInfo
		v  any
	}{
		{TypeInfo{Type: TypeDateTime}, time.Date(1752, 12, 31, 0, 0, 0, 0, time.UTC)},
		{TypeInfo{Type: TypeDateTim4}, time.Date(1899, 12, 31, 0, 0, 0, 0, time.UTC)},
		{TypeInfo{Type: TypeDateTim4}, time.Date(2079, 6, 7, 0, 0, 0, 0, time.UTC)},
		{TypeInfo{Type: TypeDateTimeOffsetN, Scale: 7}, time.Date(2000, 1, 1, 0, 0, 0, 0, time.FixedZone("", 15*3600))},
		{TypeInfo{Type: TypeMoney4}, "214748.3648"},
		{TypeInfo{Type: TypeMoney}, "922337203685477.5808"},
		{TypeInfo{Type: TypeMoneyN, MaxLen: 8}, "1.23456"},
		{TypeInfo{Type: TypeDateTime}, "2001-01-01"},
	} {
		if _, err := AppendValue(nil, &c.ti, c.v); err == nil {
			t.Errorf("%s %v: no error", c.ti, c.v)
		}
	}
}

// Rows of the new types scan: the scanner skips each value by its layout
// and sees the DONE behind them.
func TestScannerLegacyTypeRows(t *testing.T) {
	cols := []Column{
		{Type: TypeInfo{Type: TypeDateTimeN, MaxLen: 8}, Name: "dt"},
		{Type: TypeInfo{Type: TypeDateTimeN, MaxLen: 4}, Name: "sdt"},
		{Type: TypeInfo{Type: TypeDateTime}, Name: "dtf"},
		{Type: TypeInfo{Type: TypeDateTimeOffsetN, Scale: 7}, Name: "dto"},
		{Type: TypeInfo{Type: TypeMoneyN, MaxLen: 8}, Name: "m"},
		{Type: TypeInfo{Type: TypeMoney4}, Name: "sm"},
	}
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("", -3600))
	vals := []any{now, now, now, now, "1.5", "-2"}
	b := ColMetadata{Columns: cols}.AppendColMetadata(nil)
	b, err := AppendRow(b, cols, vals)
	if err != nil {
		t.Fatal(err)
	}
	b, err = AppendNBCRow(b, cols, []any{nil, nil, now, nil, nil, "0"})
	if err != nil {
		t.Fatal(err)
	}
	rv := ReturnValue{Ordinal: 1, Name: "@m", Status: ReturnValueOutput, Type: cols[4].Type, Value: "3.25"}
	if b, err = rv.AppendReturnValue(b); err != nil {
		t.Fatal(err)
	}
	b = Done{Token: TokenDone, Status: DoneCount, RowCount: 2}.AppendDone(b)
	for _, chunk := range []int{len(b), 1, 7} {
		var s Scanner
		var got []TokenType
		for off := 0; off < len(b); off += chunk {
			evs, err := s.Feed(b[off:min(off+chunk, len(b))])
			if err != nil {
				t.Fatalf("chunk %d: %v", chunk, err)
			}
			for _, e := range evs {
				got = append(got, e.Token)
			}
		}
		want := []TokenType{TokenColMetadata, TokenReturnValue, TokenDone}
		if len(got) != len(want) {
			t.Fatalf("chunk %d: events %v, want %v", chunk, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("chunk %d: events %v, want %v", chunk, got, want)
			}
		}
	}
}
