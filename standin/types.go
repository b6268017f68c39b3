package standin

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tdspool/tdspool/tds"
)

// SQL Server column types and how they are stored in SQLite.
//
// The declared SQL Server type is kept in SQLite's own schema: CREATE TABLE
// writes a declared type that SQLite reports back per result column
// (sqlite3_column_decltype, through database/sql's DatabaseTypeName), so a
// SELECT — including through aliases and joins — returns the declared SQL
// Server type. The spelling is chosen so SQLite's type affinity stores the
// value losslessly:
//
//	int/bigint/smallint/tinyint/bit  INT, BIGINT, ...   INTEGER affinity
//	float / real                     FLOAT / REAL       REAL
//	decimal(p,s) / numeric           DECIMAL_TEXT(p,s)  TEXT (exact digits)
//	money / smallmoney               MONEY_TEXT / SMALLMONEY_TEXT, the same; sent as MONEYN(8) / (4)
//	nvarchar(n|max), varchar, nchar  NVARCHAR(n|-1)     TEXT
//	varbinary(n|max), binary         VARBINARY(n|-1)    BLOB/NUMERIC
//	datetime2(s)                     DATETIME2(s)       text 'YYYY-MM-DD hh:mm:ss.fffffff'
//	datetime / smalldatetime         DATETIME / SMALLDATETIME, same text;
//	                                 sent as DATETIMN(8) / DATETIMN(4)
//	date                             DATE_TEXT          text 'YYYY-MM-DD'
//	time(s)                          TIME_TEXT(s)       text 'hh:mm:ss.fffffff'
//	datetimeoffset(s)                DATETIMEOFFSET_TEXT(s)  text 'YYYY-MM-DD hh:mm:ss.fffffff +hh:mm'
//	uniqueidentifier                 UNIQUEIDENTIFIER   canonical upper-case text
//
// Columns without a declared type (expressions, literals) are typed from
// their values: integers → int or bigint, reals → float, text → nvarchar,
// blobs → varbinary.

type kind uint8

const (
	kUnknown kind = iota
	kTinyInt
	kSmallInt
	kInt
	kBigInt
	kBit
	kFloat
	kReal
	kDecimal
	kNVarChar
	kVarBinary
	kDateTime2
	kDateTime      // datetime: 1/300 s ticks
	kSmallDateTime // smalldatetime: whole minutes
	kDate
	kGUID
	kTime           // time(s): time of day
	kDateTimeOffset // datetimeoffset(s): local time and its offset from UTC
)

type sqlType struct {
	k     kind
	size  int // nvarchar chars / varbinary bytes; -1 = MAX; money 8, smallmoney 4 (kDecimal)
	prec  int
	scale int
}

// parseSQLType maps a T-SQL type name and its arguments.
func parseSQLType(name string, args []string) (sqlType, bool) {
	arg := func(i, def int) int {
		if i < len(args) {
			if strings.EqualFold(args[i], "max") {
				return -1
			}
			if n, err := strconv.Atoi(strings.TrimSpace(args[i])); err == nil {
				return n
			}
		}
		return def
	}
	switch strings.ToLower(name) {
	case "int", "integer":
		return sqlType{k: kInt}, true
	case "bigint":
		return sqlType{k: kBigInt}, true
	case "smallint":
		return sqlType{k: kSmallInt}, true
	case "tinyint":
		return sqlType{k: kTinyInt}, true
	case "bit":
		return sqlType{k: kBit}, true
	case "float":
		if arg(0, 53) <= 24 {
			return sqlType{k: kReal}, true
		}
		return sqlType{k: kFloat}, true
	case "real":
		return sqlType{k: kReal}, true
	case "decimal", "numeric", "decimal_text", "dec":
		p := arg(0, 18)
		return sqlType{k: kDecimal, prec: min(max(p, 1), 38), scale: min(max(arg(1, 0), 0), p)}, true
	case "money", "money_text":
		return sqlType{k: kDecimal, prec: 19, scale: 4, size: 8}, true
	case "smallmoney", "smallmoney_text":
		return sqlType{k: kDecimal, prec: 10, scale: 4, size: 4}, true
	case "nvarchar", "nchar", "varchar", "char", "sysname", "ntext", "text", "xml", "character", "nationalchar":
		n := arg(0, 1)
		switch strings.ToLower(name) {
		case "sysname":
			n = 128
		case "ntext", "text", "xml":
			n = -1
		case "varchar", "char":
			if n > 4000 {
				n = -1
			}
		}
		if n == 0 || n > 4000 {
			n = -1
		}
		return sqlType{k: kNVarChar, size: n}, true
	case "varbinary", "binary", "image", "rowversion", "timestamp":
		n := arg(0, 1)
		if strings.EqualFold(name, "image") {
			n = -1
		}
		if strings.EqualFold(name, "rowversion") || strings.EqualFold(name, "timestamp") {
			n = 8
		}
		if n == 0 || n > 8000 {
			n = -1
		}
		return sqlType{k: kVarBinary, size: n}, true
	case "datetime2":
		return sqlType{k: kDateTime2, scale: min(max(arg(0, 7), 0), 7)}, true
	case "datetime":
		return sqlType{k: kDateTime}, true
	case "smalldatetime":
		return sqlType{k: kSmallDateTime}, true
	case "datetimeoffset", "datetimeoffset_text":
		return sqlType{k: kDateTimeOffset, scale: min(max(arg(0, 7), 0), 7)}, true
	case "time", "time_text":
		return sqlType{k: kTime, scale: min(max(arg(0, 7), 0), 7)}, true
	case "date", "date_text":
		return sqlType{k: kDate}, true
	case "uniqueidentifier":
		return sqlType{k: kGUID}, true
	}
	return sqlType{}, false
}

// sqliteDecl is the declared type written into SQLite (see the table above).
func (t sqlType) sqliteDecl() string {
	switch t.k {
	case kTinyInt:
		return "TINYINT"
	case kSmallInt:
		return "SMALLINT"
	case kInt:
		return "INT"
	case kBigInt:
		return "BIGINT"
	case kBit:
		return "BIT"
	case kFloat:
		return "FLOAT"
	case kReal:
		return "REAL"
	case kDecimal:
		switch t.size {
		case 8:
			return "MONEY_TEXT"
		case 4:
			return "SMALLMONEY_TEXT"
		}
		return fmt.Sprintf("DECIMAL_TEXT(%d,%d)", t.prec, t.scale)
	case kNVarChar:
		return fmt.Sprintf("NVARCHAR(%d)", t.size)
	case kVarBinary:
		return fmt.Sprintf("VARBINARY(%d)", t.size)
	case kDateTime2:
		return fmt.Sprintf("DATETIME2(%d)", t.scale)
	case kDateTime:
		return "DATETIME"
	case kSmallDateTime:
		return "SMALLDATETIME"
	case kDate:
		return "DATE_TEXT"
	case kGUID:
		return "UNIQUEIDENTIFIER"
	case kTime:
		return fmt.Sprintf("TIME_TEXT(%d)", t.scale)
	case kDateTimeOffset:
		return fmt.Sprintf("DATETIMEOFFSET_TEXT(%d)", t.scale)
	}
	return ""
}

// castType is the SQLite type used inside CAST/CONVERT.
func (t sqlType) castType() string {
	switch t.k {
	case kTinyInt, kSmallInt, kInt, kBigInt, kBit:
		return "INTEGER"
	case kFloat, kReal:
		return "REAL"
	case kVarBinary:
		return "BLOB"
	}
	return "TEXT"
}

// fromDecl parses the declared type SQLite reports for a result column.
func fromDecl(decl string) (sqlType, bool) {
	if decl == "" {
		return sqlType{}, false
	}
	if strings.EqualFold(decl, "INTEGER") { // identity columns (rowid aliases)
		return sqlType{k: kInt}, true
	}
	name, args := decl, []string(nil)
	if i := strings.IndexByte(decl, '('); i > 0 && strings.HasSuffix(decl, ")") {
		name = strings.TrimSpace(decl[:i])
		args = strings.Split(decl[i+1:len(decl)-1], ",")
	}
	t, ok := parseSQLType(name, args)
	if ok && (t.k == kNVarChar || t.k == kVarBinary) && len(args) > 0 && strings.TrimSpace(args[0]) == "-1" {
		t.size = -1
	}
	return t, ok
}

// getdateRE is the text GETDATE()/SYSDATETIME()/CURRENT_TIMESTAMP are
// rewritten to produce; an expression column of such values is datetime.
var getdateRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$`)

// inferType types an undeclared result column from its values.
func inferType(vals []any) sqlType {
	t := sqlType{}
	for _, v := range vals {
		var vt sqlType
		switch x := v.(type) {
		case nil:
			continue
		case int64:
			vt = sqlType{k: kInt}
			if x < math.MinInt32 || x > math.MaxInt32 {
				vt.k = kBigInt
			}
		case bool:
			vt = sqlType{k: kBit}
		case float64:
			vt = sqlType{k: kFloat}
		case string:
			vt = sqlType{k: kNVarChar, size: 4000}
			if len([]rune(x)) > 4000 {
				vt.size = -1
			}
			if getdateRE.MatchString(x) {
				vt = sqlType{k: kDateTime} // GETDATE() and friends: datetime
			}
		case []byte:
			vt = sqlType{k: kVarBinary, size: 8000}
			if len(x) > 8000 {
				vt.size = -1
			}
		case time.Time:
			vt = sqlType{k: kDateTime2, scale: 7}
		default:
			vt = sqlType{k: kNVarChar, size: 4000}
		}
		switch {
		case t.k == kUnknown:
			t = vt
		case t.k == vt.k:
			if vt.size == -1 || t.k == kBigInt {
				t.size = vt.size
			}
		case (t.k == kInt && vt.k == kBigInt) || (t.k == kBigInt && vt.k == kInt):
			t.k = kBigInt
		case (t.k == kInt || t.k == kBigInt) && vt.k == kFloat, t.k == kFloat && (vt.k == kInt || vt.k == kBigInt):
			t.k = kFloat
		default:
			t = sqlType{k: kNVarChar, size: -1}
		}
	}
	if t.k == kUnknown {
		t = sqlType{k: kInt} // all NULL: SQL Server types a bare NULL as int
	}
	return t
}

// typeInfo is the TYPE_INFO sent in COLMETADATA: always the nullable
// variants (INTN, BITN, FLTN, ...), as SQL Server does for nullable columns.
func (t sqlType) typeInfo() tds.TypeInfo {
	switch t.k {
	case kTinyInt:
		return tds.IntNType(1)
	case kSmallInt:
		return tds.IntNType(2)
	case kInt:
		return tds.IntNType(4)
	case kBigInt:
		return tds.IntNType(8)
	case kBit:
		return tds.BitNType()
	case kFloat:
		return tds.FltNType(8)
	case kReal:
		return tds.FltNType(4)
	case kDecimal:
		if t.size > 0 { // money, smallmoney
			return tds.TypeInfo{Type: tds.TypeMoneyN, MaxLen: uint32(t.size)}
		}
		return tds.DecimalNType(uint8(t.prec), uint8(t.scale))
	case kNVarChar:
		return tds.NVarCharType(max(t.size, 0))
	case kVarBinary:
		return tds.VarBinaryType(max(t.size, 0))
	case kDateTime2:
		return tds.DateTime2NType(uint8(t.scale))
	case kDateTime:
		return tds.TypeInfo{Type: tds.TypeDateTimeN, MaxLen: 8}
	case kSmallDateTime:
		return tds.TypeInfo{Type: tds.TypeDateTimeN, MaxLen: 4}
	case kDate:
		return tds.DateNType()
	case kGUID:
		return tds.GUIDType()
	case kTime:
		return tds.TypeInfo{Type: tds.TypeTimeN, Scale: uint8(t.scale)}
	case kDateTimeOffset:
		return tds.TypeInfo{Type: tds.TypeDateTimeOffsetN, Scale: uint8(t.scale)}
	}
	return tds.NVarCharType(0)
}

// typeFromInfo maps a parameter's TYPE_INFO back to a column type, for
// RETURNVALUE encoding of output parameters.
func typeFromInfo(ti *tds.TypeInfo) sqlType {
	switch ti.Type {
	case tds.TypeInt1:
		return sqlType{k: kTinyInt}
	case tds.TypeInt2:
		return sqlType{k: kSmallInt}
	case tds.TypeInt4:
		return sqlType{k: kInt}
	case tds.TypeInt8:
		return sqlType{k: kBigInt}
	case tds.TypeIntN:
		return map[uint32]sqlType{1: {k: kTinyInt}, 2: {k: kSmallInt}, 4: {k: kInt}, 8: {k: kBigInt}}[ti.MaxLen]
	case tds.TypeBit, tds.TypeBitN:
		return sqlType{k: kBit}
	case tds.TypeFlt4:
		return sqlType{k: kReal}
	case tds.TypeFlt8:
		return sqlType{k: kFloat}
	case tds.TypeFltN:
		if ti.MaxLen == 4 {
			return sqlType{k: kReal}
		}
		return sqlType{k: kFloat}
	case tds.TypeDecimalN, tds.TypeNumericN, tds.TypeDecimal, tds.TypeNumeric:
		return sqlType{k: kDecimal, prec: int(ti.Precision), scale: int(ti.Scale)}
	case tds.TypeMoney4:
		return sqlType{k: kDecimal, prec: 10, scale: 4, size: 4}
	case tds.TypeMoney:
		return sqlType{k: kDecimal, prec: 19, scale: 4, size: 8}
	case tds.TypeMoneyN:
		if ti.MaxLen == 4 {
			return sqlType{k: kDecimal, prec: 10, scale: 4, size: 4}
		}
		return sqlType{k: kDecimal, prec: 19, scale: 4, size: 8}
	case tds.TypeNVarChar, tds.TypeNChar, tds.TypeBigVarChar, tds.TypeBigChar, tds.TypeText, tds.TypeNText, tds.TypeXML:
		if ti.IsPLP() || ti.MaxLen > 8000 {
			return sqlType{k: kNVarChar, size: -1}
		}
		n := int(ti.MaxLen)
		if ti.Type == tds.TypeNVarChar || ti.Type == tds.TypeNChar {
			n /= 2
		}
		return sqlType{k: kNVarChar, size: max(n, 1)}
	case tds.TypeBigVarBinary, tds.TypeBigBinary, tds.TypeVarBinary, tds.TypeBinary, tds.TypeImage:
		if ti.IsPLP() || ti.MaxLen > 8000 {
			return sqlType{k: kVarBinary, size: -1}
		}
		return sqlType{k: kVarBinary, size: max(int(ti.MaxLen), 1)}
	case tds.TypeDateTime2N:
		return sqlType{k: kDateTime2, scale: int(ti.Scale)}
	case tds.TypeDateTimeOffsetN:
		return sqlType{k: kDateTimeOffset, scale: int(ti.Scale)}
	case tds.TypeTimeN:
		return sqlType{k: kTime, scale: int(ti.Scale)}
	case tds.TypeDateTime:
		return sqlType{k: kDateTime}
	case tds.TypeDateTim4:
		return sqlType{k: kSmallDateTime}
	case tds.TypeDateTimeN:
		if ti.MaxLen == 4 {
			return sqlType{k: kSmallDateTime}
		}
		return sqlType{k: kDateTime}
	case tds.TypeDateN:
		return sqlType{k: kDate}
	case tds.TypeGUID:
		return sqlType{k: kGUID}
	}
	return sqlType{k: kNVarChar, size: -1}
}

const (
	dt2Layout  = "2006-01-02 15:04:05.9999999"
	dtoLayout  = "2006-01-02 15:04:05.9999999 -07:00"
	timeLayout = "15:04:05.9999999"
)

// bindValue converts a decoded parameter or variable into what SQLite
// stores (see the table at the top).
func bindValue(v any) any {
	switch x := v.(type) {
	case bool:
		if x {
			return int64(1)
		}
		return int64(0)
	case decimalValue:
		return string(x)
	case guidValue:
		return string(x)
	case timeOfDay:
		return time.Time(x).Format(timeLayout)
	case time.Time:
		if x.Location() != time.UTC { // a datetimeoffset keeps its offset
			return x.Format(dtoLayout)
		}
		return x.Format(dt2Layout)
	}
	return v
}

var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999 -07:00", "2006-01-02 15:04", "2006-01-02", "01/02/2006 15:04:05", "01/02/2006",
	"20060102 15:04:05", "20060102", "Jan _2 2006 3:04PM", "15:04:05.999999999",
}

func parseTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// wireValue converts a SQLite value into the Go value tds.AppendValue
// expects for type t. Values that cannot be converted are conversion
// errors (SQL Server's 245/8114 family).
func wireValue(t sqlType, v any) (any, *sqlError) {
	if v == nil {
		return nil, nil
	}
	bad := func() *sqlError {
		return conversionErr(fmt.Sprintf("Conversion failed when converting the value '%v' to data type %s.", v, t))
	}
	switch t.k {
	case kTinyInt, kSmallInt, kInt, kBigInt:
		n, ok := asInt(v)
		if !ok {
			return nil, bad()
		}
		lim := map[kind]int64{kTinyInt: 255, kSmallInt: math.MaxInt16, kInt: math.MaxInt32, kBigInt: math.MaxInt64}[t.k]
		lo := -lim - 1
		if t.k == kTinyInt {
			lo = 0
		}
		if n > lim || n < lo {
			return nil, conversionErr(fmt.Sprintf("Arithmetic overflow error converting expression to data type %s.", t))
		}
		return n, nil
	case kBit:
		n, ok := asInt(v)
		if !ok {
			if s, isStr := v.(string); isStr && (strings.EqualFold(s, "true") || strings.EqualFold(s, "false")) {
				return strings.EqualFold(s, "true"), nil
			}
			return nil, bad()
		}
		return n != 0, nil
	case kFloat, kReal:
		switch x := v.(type) {
		case float64:
			return x, nil
		case int64:
			return float64(x), nil
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil {
				return nil, bad()
			}
			return f, nil
		}
		return nil, bad()
	case kDecimal:
		var s string
		switch x := v.(type) {
		case string:
			s = strings.TrimSpace(x)
		case int64:
			s = strconv.FormatInt(x, 10)
		case float64:
			s = strconv.FormatFloat(x, 'f', t.scale, 64)
		case []byte:
			s = string(x)
		default:
			return nil, bad()
		}
		return roundDecimal(s, t.scale)
	case kNVarChar:
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		case float64:
			return strconv.FormatFloat(x, 'g', -1, 64), nil
		case time.Time:
			return x.Format(dt2Layout), nil
		}
		return fmt.Sprint(v), nil
	case kVarBinary:
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			return []byte(x), nil
		case int64:
			return []byte(strconv.FormatInt(x, 10)), nil
		}
		return nil, bad()
	case kDateTime2, kDate, kDateTime, kSmallDateTime, kTime, kDateTimeOffset:
		switch x := v.(type) {
		case time.Time:
			return x, nil
		case timeOfDay:
			return time.Time(x), nil
		case string:
			if tm, ok := parseTime(x); ok {
				return tm, nil
			}
		}
		return nil, bad()
	case kGUID:
		switch x := v.(type) {
		case []byte:
			if len(x) == 16 {
				var g [16]byte
				copy(g[:], x)
				return g, nil
			}
			if _, err := hex.DecodeString(strings.ReplaceAll(string(x), "-", "")); err == nil {
				return strings.ToUpper(string(x)), nil
			}
		case string:
			h := strings.ReplaceAll(strings.Trim(x, "{}"), "-", "")
			if b, err := hex.DecodeString(h); err == nil && len(b) == 16 {
				return x, nil
			}
		}
		return nil, conversionErr("Conversion failed when converting from a character string to uniqueidentifier.")
	}
	return v, nil
}

// conversionErr is the error a value that cannot be converted raises (number 245, class 16,
// whichever conversion message SQL Server words it with).
func conversionErr(msg string) *sqlError { return errf(245, 1, 16, msg) }

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case float64:
		if x != math.Trunc(x) || math.IsInf(x, 0) || math.IsNaN(x) {
			return int64(x), !math.IsNaN(x) && !math.IsInf(x, 0)
		}
		return int64(x), true
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	case []byte:
		n, err := strconv.ParseInt(strings.TrimSpace(string(x)), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// roundDecimal rounds s half away from zero to scale digits, as SQL Server
// does when storing into decimal(p,s).
func roundDecimal(s string, scale int) (string, *sqlError) {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return "", conversionErr("Error converting data type nvarchar to numeric.")
	}
	m := new(big.Rat).Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)))
	num, den := m.Num(), m.Denom()
	q, rem := new(big.Int).QuoRem(num, den, new(big.Int))
	if new(big.Int).Mul(new(big.Int).Abs(rem), big.NewInt(2)).Cmp(den) >= 0 {
		if num.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return tds.FormatScaled(q, scale), nil
}

func (t sqlType) String() string {
	switch t.k {
	case kDecimal:
		switch t.size {
		case 8:
			return "money"
		case 4:
			return "smallmoney"
		}
		return fmt.Sprintf("decimal(%d,%d)", t.prec, t.scale)
	case kNVarChar, kVarBinary:
		n := "max"
		if t.size > 0 {
			n = strconv.Itoa(t.size)
		}
		if t.k == kNVarChar {
			return "nvarchar(" + n + ")"
		}
		return "varbinary(" + n + ")"
	case kDateTime2:
		return fmt.Sprintf("datetime2(%d)", t.scale)
	case kTime:
		return fmt.Sprintf("time(%d)", t.scale)
	case kDateTimeOffset:
		return fmt.Sprintf("datetimeoffset(%d)", t.scale)
	}
	return map[kind]string{kDateTime: "datetime", kSmallDateTime: "smalldatetime",
		kTinyInt: "tinyint", kSmallInt: "smallint", kInt: "int", kBigInt: "bigint", kBit: "bit",
		kFloat: "float", kReal: "real", kDate: "date", kGUID: "uniqueidentifier"}[t.k]
}
