package tds

// ROW (0xD1) and NBCROW (0xD2) [MS-TDS §2.2.7.19, §2.2.7.15]: one value
// per column of the preceding COLMETADATA, laid out by the column's
// TYPE_INFO. NBCROW starts with a null bitmap of ceil(n/8) bytes (bit i set
// = column i is NULL and has no bytes), which is the only way to send NULL
// for fixed-length types.

// AppendRow appends a ROW token for cols with one value per column.
func AppendRow(dst []byte, cols []Column, vals []any) ([]byte, error) {
	if len(vals) != len(cols) {
		return dst, errColumnCount(len(cols), len(vals))
	}
	start := len(dst)
	dst = append(dst, byte(TokenRow))
	var err error
	for i := range cols {
		if dst, err = AppendValue(dst, &cols[i].Type, vals[i]); err != nil {
			return dst[:start], err
		}
	}
	return dst, nil
}

// AppendNBCRow appends an NBCROW token; nil values become bitmap bits.
func AppendNBCRow(dst []byte, cols []Column, vals []any) ([]byte, error) {
	if len(vals) != len(cols) {
		return dst, errColumnCount(len(cols), len(vals))
	}
	start := len(dst)
	dst = append(dst, byte(TokenNBCRow))
	bm := len(dst)
	dst = append(dst, make([]byte, (len(cols)+7)/8)...)
	var err error
	for i := range cols {
		if vals[i] == nil {
			dst[bm+i/8] |= 1 << (i % 8)
			continue
		}
		if dst, err = AppendValue(dst, &cols[i].Type, vals[i]); err != nil {
			return dst[:start], err
		}
	}
	return dst, nil
}

func errColumnCount(cols, vals int) error {
	return protoErr("ROW", -1, "%d values for %d columns", vals, cols)
}
