package compat

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/shopspring/decimal"
)

// Target is where a workload connects: the test backend directly, or the
// proxy in front of it. The same workload runs unchanged against both.
type Target struct {
	Host     string
	Port     int
	User     string
	Password string
	Database string
	// CAFile is a PEM file with the certificate (or its CA) that the server
	// presents; required for encrypt=true and strict, which verify it.
	CAFile string
	// HostInCert is the name to verify in the certificate; default Host.
	HostInCert string
}

// Sample is the row every driver inserts and reads back, one value per
// column type the backend must round-trip.
var Sample = struct {
	I      int32
	BI     int64
	B      bool
	F      float64
	D      string // decimal(18,4)
	S      string // nvarchar(50)
	SMax   string // nvarchar(max), longer than one packet
	VB     []byte // varbinary(16)
	VBMax  []byte // varbinary(max), longer than one packet
	DT     time.Time
	GUID   string
	Create string
}{
	I:     -2147483648,
	BI:    9007199254740993,
	B:     true,
	F:     3.141592653589793,
	D:     "12345.6789",
	S:     "héllo wörld ☃",
	SMax:  strings.Repeat("0123456789abcdefé", 700),
	VB:    []byte{0, 1, 2, 0xFE, 0xFF},
	VBMax: bytes.Repeat([]byte{0xDE, 0xAD, 0xBE, 0xEF, 0}, 3000),
	DT:    time.Date(2024, 2, 29, 13, 14, 15, 123456700, time.UTC),
	GUID:  "6F9619FF-8B86-D011-B42D-00C04FC964FF",
	Create: `CREATE TABLE %s (id INT NOT NULL PRIMARY KEY, i INT NULL, bi BIGINT NULL, b BIT NULL, f FLOAT NULL,
 d DECIMAL(18,4) NULL, s NVARCHAR(50) NULL, smax NVARCHAR(MAX) NULL, vb VARBINARY(16) NULL,
 vbmax VARBINARY(MAX) NULL, dt DATETIME2(7) NULL, g UNIQUEIDENTIFIER NULL)`,
}

// GoEncryptModes are go-mssqldb's encrypt= values; strict needs a server
// that accepts TDS 8.
var GoEncryptModes = []string{"disable", "false", "true", "strict"}

// GoDSN builds a go-mssqldb URL for t with the given encrypt mode.
func GoDSN(t Target, encrypt string) string {
	q := url.Values{}
	q.Set("database", t.Database)
	q.Set("encrypt", encrypt)
	q.Set("dial timeout", "10")
	q.Set("connection timeout", "30")
	if t.CAFile != "" && encrypt != "disable" {
		q.Set("certificate", t.CAFile)
		host := t.HostInCert
		if host == "" {
			host = t.Host
		}
		q.Set("hostNameInCertificate", host)
	}
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword(t.User, t.Password),
		Host: t.Host + ":" + strconv.Itoa(t.Port), RawQuery: q.Encode()}
	return u.String()
}

// Step is one named check of a workload, reported for diagnostics.
type Step func(format string, args ...any)

// RunGo runs the compatibility workload with go-mssqldb. logf may be nil.
func RunGo(ctx context.Context, t Target, encrypt string, logf Step) (err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	db, err := sql.Open("sqlserver", GoDSN(t, encrypt))
	if err != nil {
		return err
	}
	defer db.Close()
	// One connection: the reset check needs the second checkout to reuse
	// the first's physical connection.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	step := func(name string, f func() error) {
		if err != nil {
			return
		}
		if e := f(); e != nil {
			err = fmt.Errorf("%s: %w", name, e)
			return
		}
		logf("go-mssqldb encrypt=%s: %s ok", encrypt, name)
	}
	table := fmt.Sprintf("compat_go_%s_%d", encrypt, time.Now().UnixNano()%1e9)

	step("connect and identify", func() error {
		var spid int
		var version, dbName, server string
		if err := db.QueryRowContext(ctx, "SELECT @@SPID, @@VERSION, DB_NAME(), @@SERVERNAME").Scan(&spid, &version, &dbName, &server); err != nil {
			return err
		}
		if spid <= 0 || !strings.Contains(version, "Microsoft SQL Server") || !strings.EqualFold(dbName, t.Database) {
			return fmt.Errorf("got spid=%d version=%q db=%q", spid, version, dbName)
		}
		return nil
	})
	step("create table", func() error {
		_, err := db.ExecContext(ctx, fmt.Sprintf(Sample.Create, table))
		return err
	})
	defer func() {
		if _, e := db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+table); e != nil && err == nil {
			err = fmt.Errorf("drop table: %w", e)
		}
	}()
	s := Sample
	guid := mssql.UniqueIdentifier{}
	step("insert with parameters", func() error {
		if err := guid.Scan(s.GUID); err != nil {
			return err
		}
		res, err := db.ExecContext(ctx, "INSERT INTO "+table+" (id, i, bi, b, f, d, s, smax, vb, vbmax, dt, g) VALUES (@p1, @p2, @p3, @p4, @p5, @p6, @p7, @p8, @p9, @p10, @p11, @p12)",
			1, s.I, s.BI, s.B, s.F, decimal.RequireFromString(s.D), s.S, s.SMax, s.VB, s.VBMax, s.DT, guid)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("rows affected %d, want 1", n)
		}
		_, err = db.ExecContext(ctx, "INSERT INTO "+table+" (id) VALUES (@p1)", 2)
		return err
	})
	step("read back every type", func() error {
		rows, err := db.QueryContext(ctx, "SELECT i, bi, b, f, d, s, smax, vb, vbmax, dt, g FROM "+table+" WHERE id = @p1", 1)
		if err != nil {
			return err
		}
		defer rows.Close()
		cts, err := rows.ColumnTypes()
		if err != nil {
			return err
		}
		want := []string{"INT", "BIGINT", "BIT", "FLOAT", "DECIMAL", "NVARCHAR", "NVARCHAR", "VARBINARY", "VARBINARY", "DATETIME2", "UNIQUEIDENTIFIER"}
		for i, ct := range cts {
			if ct.DatabaseTypeName() != want[i] {
				return fmt.Errorf("column %s type %s, want %s", ct.Name(), ct.DatabaseTypeName(), want[i])
			}
		}
		if !rows.Next() {
			return errors.New("no row")
		}
		var (
			i         int32
			bi        int64
			b         bool
			f         float64
			d         decimal.Decimal
			str, smax string
			vb, vbmax []byte
			dt        time.Time
			g         mssql.UniqueIdentifier
		)
		if err := rows.Scan(&i, &bi, &b, &f, &d, &str, &smax, &vb, &vbmax, &dt, &g); err != nil {
			return err
		}
		var bad []string
		check := func(name string, ok bool, got, want any) {
			if !ok {
				bad = append(bad, fmt.Sprintf("%s=%v want %v", name, got, want))
			}
		}
		check("i", i == s.I, i, s.I)
		check("bi", bi == s.BI, bi, s.BI)
		check("b", b == s.B, b, s.B)
		check("f", f == s.F, f, s.F)
		check("d", d.Equal(decimal.RequireFromString(s.D)), d, s.D)
		check("s", str == s.S, str, s.S)
		check("smax", smax == s.SMax, len(smax), len(s.SMax))
		check("vb", bytes.Equal(vb, s.VB), vb, s.VB)
		check("vbmax", bytes.Equal(vbmax, s.VBMax), len(vbmax), len(s.VBMax))
		check("dt", dt.Equal(s.DT), dt, s.DT)
		check("g", g == guid, g, guid)
		if len(bad) > 0 {
			return errors.New(strings.Join(bad, "; "))
		}
		rows.Close()
		// The NULL row: every column must come back NULL.
		var ni sql.NullInt32
		var ns sql.NullString
		var nb []byte
		var ndt sql.NullTime
		if err := db.QueryRowContext(ctx, "SELECT i, smax, vbmax, dt FROM "+table+" WHERE id = 2").Scan(&ni, &ns, &nb, &ndt); err != nil {
			return err
		}
		if ni.Valid || ns.Valid || nb != nil || ndt.Valid {
			return fmt.Errorf("NULL row came back as %v %v %v %v", ni, ns, nb, ndt)
		}
		return nil
	})
	count := func(where string) (n int, err error) {
		err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table+" WHERE "+where).Scan(&n)
		return
	}
	step("committed transaction", func() error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (id, s) VALUES (@p1, @p2)", 10, "committed"); err != nil {
			tx.Rollback()
			return err
		}
		var tc int
		if err := tx.QueryRowContext(ctx, "SELECT @@TRANCOUNT").Scan(&tc); err != nil || tc != 1 {
			tx.Rollback()
			return fmt.Errorf("@@TRANCOUNT=%d err=%v, want 1", tc, err)
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		if n, err := count("id = 10"); err != nil || n != 1 {
			return fmt.Errorf("after commit count=%d err=%v", n, err)
		}
		return nil
	})
	step("rolled-back transaction", func() error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (id, s) VALUES (@p1, @p2)", 11, "rolled back"); err != nil {
			tx.Rollback()
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE "+table+" SET s = 'changed' WHERE id = 10"); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Rollback(); err != nil {
			return err
		}
		if n, err := count("id = 11 OR s = 'changed'"); err != nil || n != 0 {
			return fmt.Errorf("after rollback count=%d err=%v", n, err)
		}
		return nil
	})
	step("prepared statement executed several times", func() error {
		// database/sql prepare (go-mssqldb runs it as sp_executesql).
		stmt, err := db.PrepareContext(ctx, "INSERT INTO "+table+" (id, i) VALUES (@p1, @p2)")
		if err != nil {
			return err
		}
		for k := 0; k < 3; k++ {
			if _, err := stmt.ExecContext(ctx, 100+k, k*k); err != nil {
				stmt.Close()
				return err
			}
		}
		stmt.Close()
		// Server-side handles: sp_prepare, sp_execute ×3, sp_unprepare, on
		// one checked-out connection: a pool checkout resets the session,
		// which (correctly) discards prepared handles.
		c, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		var handle int32
		var rs mssql.ReturnStatus
		if _, err := c.ExecContext(ctx, "sp_prepare", sql.Named("handle", sql.Out{Dest: &handle}),
			sql.Named("params", "@id int, @i int"), sql.Named("stmt", "INSERT INTO "+table+" (id, i) VALUES (@id, @i)"),
			sql.Named("options", 1), &rs); err != nil {
			return err
		}
		if handle == 0 || rs != 0 {
			return fmt.Errorf("sp_prepare handle=%d status=%d", handle, rs)
		}
		for k := 0; k < 3; k++ {
			if _, err := c.ExecContext(ctx, "sp_execute", handle, 200+k, k); err != nil {
				return fmt.Errorf("sp_execute: %w", err)
			}
		}
		if _, err := c.ExecContext(ctx, "sp_unprepare", handle); err != nil {
			return err
		}
		if _, err := c.ExecContext(ctx, "sp_execute", handle, 299, 0); err == nil {
			return errors.New("sp_execute after sp_unprepare succeeded")
		}
		c.Close() // the pool has one connection; count below needs it
		if n, err := count("id BETWEEN 100 AND 299"); err != nil || n != 6 {
			return fmt.Errorf("prepared inserts count=%d err=%v, want 6", n, err)
		}
		return nil
	})
	step("output parameter", func() error {
		var out int64
		if _, err := db.ExecContext(ctx, "SET @out = @in * 2", sql.Named("in", 21), sql.Named("out", sql.Out{Dest: &out})); err != nil {
			return err
		}
		if out != 42 {
			return fmt.Errorf("out=%d, want 42", out)
		}
		return nil
	})
	proc := table + "_double"
	step("stored procedure with an OUTPUT parameter", func() error {
		if _, err := db.ExecContext(ctx, "CREATE PROCEDURE "+proc+" @in INT, @out INT OUTPUT AS BEGIN SET NOCOUNT ON; SET @out = @in * 2; RETURN 5 END"); err != nil {
			return err
		}
		defer db.ExecContext(context.Background(), "DROP PROCEDURE IF EXISTS "+proc)
		var out int64
		var rs mssql.ReturnStatus
		if _, err := db.ExecContext(ctx, proc, sql.Named("in", 21), sql.Named("out", sql.Out{Dest: &out}), &rs); err != nil {
			return err
		}
		if out != 42 || rs != 5 {
			return fmt.Errorf("out=%d status=%d, want 42 and 5", out, rs)
		}
		return nil
	})
	step("TRY/CATCH surfaces the error", func() error {
		var num int
		var msg string
		dup := "INSERT INTO " + table + " (id) VALUES (1)" // id 1 exists
		if err := db.QueryRowContext(ctx, "BEGIN TRY "+dup+" END TRY BEGIN CATCH SELECT ERROR_NUMBER(), ERROR_MESSAGE() END CATCH").Scan(&num, &msg); err != nil {
			return err
		}
		if num != 2627 || !strings.Contains(msg, "duplicate key") {
			return fmt.Errorf("caught %d %q, want 2627", num, msg)
		}
		_, err := db.ExecContext(ctx, "BEGIN TRY "+dup+" END TRY BEGIN CATCH THROW; END CATCH")
		var me mssql.Error
		if !errors.As(err, &me) || me.Number != 2627 {
			return fmt.Errorf("rethrown: %v, want error 2627", err)
		}
		return nil
	})
	step("session option round trip", func() error {
		c, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.ExecContext(ctx, "SET DATEFIRST 3; SET LOCK_TIMEOUT 1234; SET XACT_ABORT ON"); err != nil {
			return err
		}
		var first, lock, xa int
		if err := c.QueryRowContext(ctx, "SELECT @@DATEFIRST, @@LOCK_TIMEOUT, @@OPTIONS & 16384").Scan(&first, &lock, &xa); err != nil {
			return err
		}
		if first != 3 || lock != 1234 || xa != 16384 {
			return fmt.Errorf("after SET: DATEFIRST %d LOCK_TIMEOUT %d XACT_ABORT %d", first, lock, xa)
		}
		if _, err := c.ExecContext(ctx, "SET DATEFIRST 7; SET LOCK_TIMEOUT -1; SET XACT_ABORT OFF"); err != nil {
			return err
		}
		if err := c.QueryRowContext(ctx, "SELECT @@DATEFIRST, @@LOCK_TIMEOUT, @@OPTIONS & 16384").Scan(&first, &lock, &xa); err != nil {
			return err
		}
		if first != 7 || lock != -1 || xa != 0 {
			return fmt.Errorf("after SET back: DATEFIRST %d LOCK_TIMEOUT %d XACT_ABORT %d", first, lock, xa)
		}
		return nil
	})
	step("temp table gone after reset", func() error {
		c1, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		var spid1, spid2, n int
		if _, err := c1.ExecContext(ctx, "CREATE TABLE #scratch (x INT); INSERT INTO #scratch VALUES (1)"); err != nil {
			c1.Close()
			return err
		}
		if err := c1.QueryRowContext(ctx, "SELECT COUNT(*), @@SPID FROM #scratch").Scan(&n, &spid1); err != nil || n != 1 {
			c1.Close()
			return fmt.Errorf("temp table before reset: n=%d err=%v", n, err)
		}
		c1.Close() // back to the pool; the next checkout sends RESETCONNECTION
		c2, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer c2.Close()
		if err := c2.QueryRowContext(ctx, "SELECT @@SPID").Scan(&spid2); err != nil {
			return err
		}
		if spid1 != spid2 {
			return fmt.Errorf("second checkout is spid %d, first was %d: not the same connection", spid2, spid1)
		}
		err = c2.QueryRowContext(ctx, "SELECT COUNT(*) FROM #scratch").Scan(&n)
		var me mssql.Error
		if !errors.As(err, &me) || me.Number != 208 {
			return fmt.Errorf("temp table after reset: err=%v, want error 208", err)
		}
		return nil
	})
	step("cancelled WAITFOR", func() error {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := db.ExecContext(cctx, "WAITFOR DELAY '00:00:20'")
		if err == nil {
			return errors.New("WAITFOR was not cancelled")
		}
		if el := time.Since(start); el > 10*time.Second {
			return fmt.Errorf("cancel took %v", el)
		}
		var one int
		if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			return fmt.Errorf("connection unusable after cancel: %v", err)
		}
		return nil
	})
	step("server errors surface as mssql.Error", func() error {
		_, err := db.ExecContext(ctx, "SELECT * FROM no_such_table_xyz")
		var me mssql.Error
		if !errors.As(err, &me) || me.Number != 208 || me.Class != 16 {
			return fmt.Errorf("got %v, want error 208 class 16", err)
		}
		_, err = db.ExecContext(ctx, "RAISERROR('custom failure %d', 16, 3, 42)")
		if !errors.As(err, &me) || me.Number != 50000 || me.State != 3 || me.Message != "custom failure 42" {
			return fmt.Errorf("RAISERROR: got %#v", err)
		}
		_, err = db.ExecContext(ctx, "THROW 51000, 'thrown', 1")
		if !errors.As(err, &me) || me.Number != 51000 {
			return fmt.Errorf("THROW: got %v", err)
		}
		return nil
	})
	return err
}
