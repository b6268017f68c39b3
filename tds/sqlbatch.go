package tds

import "fmt"

// SQL_BATCH (0x01) [MS-TDS §2.2.6.7]: ALL_HEADERS then the SQL text in
// UTF-16LE to the end of the message (no length, no terminator). This
// package assumes TDS 7.2+, where ALL_HEADERS is mandatory.

// SQLBatch is a decoded SQL_BATCH request.
type SQLBatch struct {
	Headers AllHeaders
	Text    string
}

// DecodeSQLBatch parses a SQL_BATCH payload.
func DecodeSQLBatch(b []byte) (*SQLBatch, error) {
	h, n, err := DecodeAllHeaders(b)
	if err != nil {
		return nil, err
	}
	text := b[n:]
	if len(text)%2 != 0 {
		return nil, protoErr("SQL_BATCH", n, "odd text length %d", len(text))
	}
	return &SQLBatch{Headers: h, Text: ucs2String(text)}, nil
}

// AppendSQLBatch appends the payload (frame it with PacketSQLBatch).
func (q *SQLBatch) AppendSQLBatch(dst []byte) []byte {
	dst = q.Headers.AppendAllHeaders(dst)
	return appendUCS2(dst, q.Text)
}

func (q *SQLBatch) String() string {
	t := q.Text
	if len(t) > 80 {
		t = t[:80] + "…"
	}
	return fmt.Sprintf("SQL_BATCH{txn=0x%X text=%q}", q.Headers.TransactionDescriptor, t)
}
