package tds

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"time"
)

// allTypesColumns covers every TYPE_INFO category the scanner must skip.
func allTypesColumns() []Column {
	return []Column{
		{Type: TypeInfo{Type: TypeInt4, MaxLen: 4}, Name: "int4"},
		{Type: TypeInfo{Type: TypeFlt8, MaxLen: 8}, Name: "flt8"},
		{Flags: ColNullable, Type: IntNType(4), Name: "intn"},
		{Flags: ColNullable, Type: DecimalNType(38, 4), Name: "dec"},
		{Flags: ColNullable, Type: TypeInfo{Type: TypeTimeN, Scale: 2}, Name: "time2"},
		{Flags: ColNullable, Type: TypeInfo{Type: TypeDateTimeOffsetN, Scale: 7}, Name: "dto"},
		{Flags: ColNullable, Type: DateNType(), Name: "date"},
		{Flags: ColNullable, Type: NVarCharType(20), Name: "nv"},
		{Flags: ColNullable, Type: NVarCharType(0), Name: "nvmax"},
		{Flags: ColNullable, Type: VarBinaryType(0), Name: "vbmax"},
		{Flags: ColNullable, Type: TypeInfo{Type: TypeText, MaxLen: 0x7FFFFFFF, Collation: CollationLatin1General}, TableName: []string{"dbo", "t"}, Name: "text"},
		{Flags: ColNullable, Type: TypeInfo{Type: TypeImage, MaxLen: 0x7FFFFFFF}, TableName: []string{"t"}, Name: "img"},
		{Flags: ColNullable, Type: TypeInfo{Type: TypeVariant, MaxLen: 8016}, Name: "var"},
		{Flags: ColNullable, Type: TypeInfo{Type: TypeXML, MaxLen: MaxLenPLP}, Name: "xml"},
		{Flags: ColNullable, Type: TypeInfo{Type: TypeUDT, MaxLen: 0xFFFF, DBName: "d", OwningSchema: "sys", TypeName: "hierarchyid", SchemaCollection: "a"}, Name: "udt"},
		{Flags: ColNullable, Type: GUIDType(), Name: "guid"},
		{Flags: ColNullable, Type: TypeInfo{Type: TypeBigChar, MaxLen: 10, Collation: CollationLatin1General}, Name: "char"},
	}
}

// rawRowValues appends one ROW body (values only) for allTypesColumns,
// hand-encoding the types AppendValue does not produce.
func rawRowValues(t testing.TB, dst []byte, cols []Column, i int, nulls bool) []byte {
	var err error
	add := func(ti *TypeInfo, v any) {
		if dst, err = AppendValue(dst, ti, v); err != nil {
			t.Fatal(err)
		}
	}
	le := binary.LittleEndian
	add(&cols[0].Type, int32(i))
	dst = le.AppendUint64(dst, 0x400921FB54442D18)
	if nulls {
		add(&cols[2].Type, nil)
	} else {
		add(&cols[2].Type, int32(-i))
	}
	add(&cols[3].Type, fmt.Sprintf("%d.1234", i))
	dst = append(dst, 3, 1, 2, 3)                        // time(2): 3 bytes
	dst = append(dst, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10) // datetimeoffset(7): 5+3+2
	add(&cols[6].Type, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	add(&cols[7].Type, strings.Repeat("n", i%20))
	if nulls {
		add(&cols[8].Type, nil)
	} else {
		add(&cols[8].Type, strings.Repeat("long", i))
	}
	// varbinary(max) as a multi-chunk PLP with unknown total length.
	dst = le.AppendUint64(dst, 0xFFFFFFFFFFFFFFFE)
	for c := 0; c < 3; c++ {
		dst = le.AppendUint32(dst, uint32(c+1))
		dst = append(dst, bytes.Repeat([]byte{byte(c)}, c+1)...)
	}
	dst = le.AppendUint32(dst, 0)
	// text: textptr(16) + timestamp(8) + len(4) + data.
	if nulls {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 16)
		dst = append(dst, make([]byte, 16+8)...)
		dst = le.AppendUint32(dst, 5)
		dst = append(dst, "hello"...)
	}
	dst = append(dst, 0) // image NULL
	// sql_variant: int4 inside (base type 0x38, 0 property bytes, 4 data).
	dst = le.AppendUint32(dst, 6)
	dst = append(dst, 0x38, 0, 1, 0, 0, 0)
	add(&cols[13].Type, "<a/>")
	dst = le.AppendUint64(dst, plpNull) // UDT NULL
	add(&cols[15].Type, [16]byte{1})
	add(&cols[16].Type, []byte("abcdefghij"))
	return dst
}

// buildResponse makes a token stream exercising every token the scanner reports.
func buildResponse(t testing.TB, rows int) ([]byte, []Event) {
	cols := allTypesColumns()
	var b []byte
	var want []Event
	ev := func(e Event) { want = append(want, e) }

	e1 := EnvChangeDatabase("app", "master")
	b = e1.AppendEnvChange(b)
	ev(Event{Token: TokenEnvChange, EnvChange: e1})
	m := ServerMessage{Token: TokenInfo, Number: 5701, Class: 0, Text: "Changed database context to 'app'.", Server: "srv", Line: 1}
	b = m.AppendMessage(b)
	ev(Event{Token: TokenInfo, Message: m})
	e2 := EnvChangeCollation(CollationLatin1General)
	b = e2.AppendEnvChange(b)
	ev(Event{Token: TokenEnvChange, EnvChange: e2})
	e3 := EnvChangePacketSize(8000, 4096)
	b = e3.AppendEnvChange(b)
	ev(Event{Token: TokenEnvChange, EnvChange: e3})
	la := LoginAck{Interface: 1, TDSVersion: TDSVersion74, ProgName: "Microsoft SQL Server", ProgVersion: 0x10000FA0}
	b = la.AppendLoginAck(b)
	ev(Event{Token: TokenLoginAck, LoginAck: la})
	fa := FeatureExtAck{Features: []Feature{{FeatureUTF8Support, []byte{1}}}}
	b = fa.AppendFeatureExtAck(b)
	ev(Event{Token: TokenFeatureExtAck, FeatureExtAck: fa})
	e4 := EnvChangeBeginTran(42)
	b = e4.AppendEnvChange(b)
	ev(Event{Token: TokenEnvChange, EnvChange: e4})

	b = ColMetadata{Columns: cols}.AppendColMetadata(b)
	ev(Event{Token: TokenColMetadata, Columns: len(cols)})
	// ORDER and TABNAME-like tokens are skipped silently.
	b = append(b, byte(TokenOrder), 2, 0, 1, 0)
	for i := 0; i < rows; i++ {
		if i%2 == 0 {
			b = append(b, byte(TokenRow))
			b = rawRowValues(t, b, cols, i, false)
		} else {
			// NBCROW: NULL the fixed int4 (col 0)... fixed columns can be
			// NULL only in NBCROW; build it by hand.
			b = append(b, byte(TokenNBCRow))
			bm := make([]byte, (len(cols)+7)/8)
			bm[0] = 1             // column 0 NULL
			bm[1] = 1 << (11 - 8) // img NULL via bitmap
			b = append(b, bm...)
			full := rawRowValues(t, nil, cols, i, true)
			// drop column 0 (4 bytes) and the img NULL byte from the raw values
			full = full[4:]
			b = append(b, stripImg(t, full, cols, i)...)
		}
	}
	d := Done{Token: TokenDoneInProc, Status: DoneMore | DoneCount, CurCmd: 0xC1, RowCount: uint64(rows)}
	b = d.AppendDone(b)
	ev(Event{Token: TokenDoneInProc, Done: d})
	rv := ReturnValue{Ordinal: 0, Name: "@handle", Status: ReturnValueOutput, Type: IntNType(4), Value: int32(1)}
	b, _ = rv.AppendReturnValue(b)
	rv.Value = nil
	ev(Event{Token: TokenReturnValue, ReturnValue: rv})
	rv2 := ReturnValue{Ordinal: 1, Name: "@big", Status: ReturnValueOutput, Type: NVarCharType(0), Value: strings.Repeat("x", 100)}
	b, _ = rv2.AppendReturnValue(b)
	rv2.Value = nil
	ev(Event{Token: TokenReturnValue, ReturnValue: rv2})
	b = AppendReturnStatus(b, 0)
	ev(Event{Token: TokenReturnStatus})
	em := ServerMessage{Token: TokenError, Number: 50000, State: 1, Class: 16, Text: "boom", Server: "srv", Proc: "p", Line: 7}
	b = em.AppendMessage(b)
	ev(Event{Token: TokenError, Message: em})
	d2 := Done{Token: TokenDoneProc, Status: DoneError}
	b = d2.AppendDone(b)
	ev(Event{Token: TokenDoneProc, Done: d2})
	e5 := EnvChangeCommitTran(42)
	b = e5.AppendEnvChange(b)
	ev(Event{Token: TokenEnvChange, EnvChange: e5})
	e6 := EnvChangeResetAck()
	b = e6.AppendEnvChange(b)
	ev(Event{Token: TokenEnvChange, EnvChange: e6})
	e7 := EnvChangeRouting("replica.example", 11000)
	b = e7.AppendEnvChange(b)
	ev(Event{Token: TokenEnvChange, EnvChange: e7})
	d3 := Done{Token: TokenDone, Status: DoneCount, RowCount: 3}
	b = d3.AppendDone(b)
	ev(Event{Token: TokenDone, Done: d3})
	return b, want
}

// stripImg removes the 1-byte NULL text pointer of the img column from a
// raw row (it is NULL via the bitmap instead).
func stripImg(t testing.TB, raw []byte, cols []Column, i int) []byte {
	// Find the offset of the img value: encode the row up to column 11.
	full := rawRowValues(t, nil, cols, i, true)
	upTo := len(full) - len(tailFrom(t, cols, i, 11))
	out := append([]byte(nil), full[4:upTo]...)
	return append(out, full[upTo+1:]...)
}

// tailFrom returns the encoded values from column k to the end.
func tailFrom(t testing.TB, cols []Column, i, k int) []byte {
	le := binary.LittleEndian
	var dst []byte
	if k <= 11 {
		dst = append(dst, 0) // img NULL
	}
	dst = le.AppendUint32(dst, 6)
	dst = append(dst, 0x38, 0, 1, 0, 0, 0)
	dst, _ = AppendValue(dst, &cols[13].Type, "<a/>")
	dst = le.AppendUint64(dst, plpNull)
	dst, _ = AppendValue(dst, &cols[15].Type, [16]byte{1})
	dst, _ = AppendValue(dst, &cols[16].Type, []byte("abcdefghij"))
	return dst
}

func normEvents(evs []Event) []Event {
	out := make([]Event, 0, len(evs))
	for _, e := range evs {
		e.EnvChange = norm(e.EnvChange)
		for i := range e.FeatureExtAck.Features {
			if len(e.FeatureExtAck.Features[i].Data) == 0 {
				e.FeatureExtAck.Features[i].Data = nil
			}
		}
		out = append(out, e)
	}
	return out
}

func TestScannerAllTokensAnyChunking(t *testing.T) {
	stream, want := buildResponse(t, 20)
	want = normEvents(want)
	check := func(name string, chunks [][]byte) {
		var s Scanner
		var got []Event
		for _, c := range chunks {
			ev, err := s.Feed(c)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got = append(got, ev...)
		}
		if !s.AtTokenBoundary() {
			t.Fatalf("%s: not at token boundary", name)
		}
		if s.Rows != 20 || s.ResultSets != 1 {
			t.Fatalf("%s: rows %d sets %d", name, s.Rows, s.ResultSets)
		}
		if got = normEvents(got); !reflect.DeepEqual(got, want) {
			for i := range max(len(got), len(want)) {
				var g, w Event
				if i < len(got) {
					g = got[i]
				}
				if i < len(want) {
					w = want[i]
				}
				if !reflect.DeepEqual(g, w) {
					t.Fatalf("%s: event %d\n got %v\nwant %v", name, i, g, w)
				}
			}
		}
	}
	check("whole", [][]byte{stream})
	for _, size := range []int{1, 2, 3, 5, 7, 13, 64, 511, 4088} {
		var chunks [][]byte
		for i := 0; i < len(stream); i += size {
			chunks = append(chunks, stream[i:min(i+size, len(stream))])
		}
		check(fmt.Sprintf("size%d", size), chunks)
	}
	rng := rand.New(rand.NewSource(1))
	for trial := 0; trial < 200; trial++ {
		var chunks [][]byte
		for i := 0; i < len(stream); {
			n := 1 + rng.Intn(40)
			chunks = append(chunks, stream[i:min(i+n, len(stream))])
			i += n
		}
		check("random", chunks)
	}
}

func TestResponseScanner(t *testing.T) {
	stream, want := buildResponse(t, 50)
	var wire []byte
	wire = AppendPacketsSPID(wire, PacketReply, 0, 55, stream, 512)
	wire = AppendPacketsSPID(wire, PacketReply, 0, 55, Done{Status: DoneAttn}.AppendDone(nil), 512)
	for _, step := range []int{1, 100, len(wire)} {
		var r ResponseScanner
		var got []Event
		for i := 0; i < len(wire); i += step {
			ev, err := r.Feed(wire[i:min(i+step, len(wire))])
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ev...)
		}
		if r.Messages != 2 || len(got) != len(want)+3 || got[len(want)].Token != TokenEndOfMessage ||
			got[len(got)-2].Done.Status != DoneAttn || got[len(got)-1].Token != TokenEndOfMessage {
			t.Fatalf("step %d: %d messages, %d events", step, r.Messages, len(got))
		}
	}
	// A response that ends inside a token is an error at EOM.
	var r ResponseScanner
	if _, err := r.Feed(AppendPackets(nil, PacketReply, 0, stream[:len(stream)-3], 4096)); err == nil {
		t.Fatal("truncated response accepted")
	}
	var r2 ResponseScanner
	if _, err := r2.Feed(AppendPackets(nil, PacketSQLBatch, 0, nil, 4096)); err == nil {
		t.Fatal("non-reply packet accepted")
	}
}

func TestScannerRefusesWhatItCannotSkip(t *testing.T) {
	md := ColMetadata{Columns: []Column{{Type: IntNType(4), Name: "a"}}}.AppendColMetadata(nil)
	tests := []struct {
		name string
		in   []byte
	}{
		{"unknown token", []byte{0x42}},
		{"altmetadata", []byte{byte(TokenAltMetadata), 0, 0}},
		{"altrow", []byte{byte(TokenAltRow)}},
		{"dataclassification", []byte{byte(TokenDataClassification), 0}},
		{"no metadata", []byte{byte(TokenColMetadata), 0xFF, 0xFF}},
		{"row without metadata", []byte{byte(TokenRow), 1}},
		{"unknown type", []byte{byte(TokenColMetadata), 1, 0, 0, 0, 0, 0, 0, 0, 0x99, 0}},
		{"encrypted column", []byte{byte(TokenColMetadata), 1, 0, 0, 0, 0, 0, 0x00, 0x08, 0x26, 4, 0}},
		{"unknown envchange", []byte{byte(TokenEnvChange), 3, 0, 99, 0, 0}},
		{"bad scale", append([]byte{byte(TokenColMetadata), 1, 0, 0, 0, 0, 0, 0, 0, byte(TypeTimeN), 9, 0}, md...)},
	}
	for _, tt := range tests {
		var s Scanner
		_, err := s.Feed(tt.in)
		var ue *UnsupportedError
		var pe *ProtocolError
		if err == nil || !(errors.As(err, &ue) || errors.As(err, &pe)) {
			t.Errorf("%s: got %v", tt.name, err)
		}
		if _, err2 := s.Feed([]byte{byte(TokenDone)}); err2 != err {
			t.Errorf("%s: error not sticky", tt.name)
		}
	}
}

func TestScannerTokenLimit(t *testing.T) {
	s := Scanner{MaxTokenSize: 100}
	md := ColMetadata{Columns: []Column{{Type: IntNType(4), Name: strings.Repeat("c", 200)}}}.AppendColMetadata(nil)
	var err error
	for i := 0; i < len(md) && err == nil; i += 10 {
		_, err = s.Feed(md[i:min(i+10, len(md))])
	}
	var le *LimitError
	if !errors.As(err, &le) {
		t.Fatalf("got %v", err)
	}
}

func FuzzScanner(f *testing.F) {
	stream, _ := buildResponse(f, 4)
	// The full response is kept out of the seeds: with it the fuzz
	// coordinator's exec counter stalled (the worker kept running).
	f.Add(stream[:200], uint16(7))
	f.Add(stream[len(stream)-300:], uint16(1))
	f.Add(ColMetadata{Columns: allTypesColumns()}.AppendColMetadata(nil), uint16(5))
	f.Add(ErrorMessage(1, 1, 16, "x", "s", "p", 1), uint16(3))
	f.Add([]byte{byte(TokenColMetadata), 1, 0, 0, 0, 0, 0, 0, 0, byte(TypeText), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(TokenRow), 5}, uint16(2))
	f.Fuzz(func(t *testing.T, b []byte, step uint16) {
		if step == 0 {
			step = 1
		}
		// Chunking must not change the outcome: compare whole-buffer scan
		// with a chunked scan.
		var whole Scanner
		wantEv, wantErr := whole.Feed(b)
		wantEv = append([]Event(nil), wantEv...)
		var chunked Scanner
		var got []Event
		var err error
		for i := 0; i < len(b) && err == nil; i += int(step) {
			var ev []Event
			ev, err = chunked.Feed(b[i:min(i+int(step), len(b))])
			got = append(got, ev...)
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("whole err %v, chunked err %v", wantErr, err)
		}
		if err == nil && !reflect.DeepEqual(normEvents(got), normEvents(wantEv)) {
			t.Fatalf("events differ:\n%v\n%v", got, wantEv)
		}
		if err == nil && whole.AtTokenBoundary() != chunked.AtTokenBoundary() {
			t.Fatalf("boundary differs")
		}
	})
}

func benchStream(b *testing.B, cols []Column, row func(i int) []any, rows int) []byte {
	stream := ColMetadata{Columns: cols}.AppendColMetadata(nil)
	var err error
	for i := 0; i < rows; i++ {
		if stream, err = AppendNBCRow(stream, cols, row(i)); err != nil {
			b.Fatal(err)
		}
	}
	return Done{Status: DoneCount, RowCount: uint64(rows)}.AppendDone(stream)
}

func runScanBench(b *testing.B, stream []byte, chunk int) {
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		var s Scanner
		for i := 0; i < len(stream); i += chunk {
			if _, err := s.Feed(stream[i:min(i+chunk, len(stream))]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkScannerFixedRows(b *testing.B) {
	cols := []Column{
		{Type: TypeInfo{Type: TypeInt4, MaxLen: 4}}, {Type: TypeInfo{Type: TypeInt8, MaxLen: 8}},
		{Type: TypeInfo{Type: TypeFlt8, MaxLen: 8}}, {Type: TypeInfo{Type: TypeDateTime, MaxLen: 8}},
		{Type: TypeInfo{Type: TypeMoney, MaxLen: 8}}, {Type: TypeInfo{Type: TypeBit, MaxLen: 1}},
	}
	var stream []byte
	stream = ColMetadata{Columns: cols}.AppendColMetadata(stream)
	row := []any{int32(1), int64(2), 3.0, nil, nil, true}
	for i := 0; i < 100000; i++ {
		stream = append(stream, byte(TokenRow))
		stream, _ = AppendValue(stream, &cols[0].Type, row[0])
		stream, _ = AppendValue(stream, &cols[1].Type, row[1])
		stream, _ = AppendValue(stream, &cols[2].Type, row[2])
		stream = append(stream, make([]byte, 16)...)
		stream, _ = AppendValue(stream, &cols[5].Type, row[5])
	}
	stream = Done{}.AppendDone(stream)
	for _, chunk := range []int{4088, 32759} {
		b.Run(fmt.Sprintf("chunk%d", chunk), func(b *testing.B) { runScanBench(b, stream, chunk) })
	}
}

func BenchmarkScannerMixedRows(b *testing.B) {
	cols := []Column{
		{Type: IntNType(4)}, {Type: IntNType(8)}, {Type: NVarCharType(50)}, {Type: DecimalNType(18, 2)},
		{Type: DateTime2NType(7)}, {Type: FltNType(8)}, {Type: VarBinaryType(0)}, {Type: BitNType()}, {Type: GUIDType()},
	}
	ts := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	stream := benchStream(b, cols, func(i int) []any {
		var blob any
		if i%4 == 0 {
			blob = []byte("some binary payload")
		}
		return []any{int32(i), int64(i) << 20, "customer name " + fmt.Sprint(i%100), "123.45", ts, 1.5, blob, i%2 == 0, [16]byte{byte(i)}}
	}, 50000)
	for _, chunk := range []int{4088, 32759} {
		b.Run(fmt.Sprintf("chunk%d", chunk), func(b *testing.B) { runScanBench(b, stream, chunk) })
	}
}
