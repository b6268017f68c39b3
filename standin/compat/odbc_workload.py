"""The compatibility workload for pyodbc on FreeTDS's ODBC driver (libtdsodbc, unixODBC).

Usage: python odbc_workload.py COMMAND DRIVER HOST PORT USER PASSWORD DATABASE MODES [APPNAME]
COMMAND: workload (every step, once per mode of the comma-separated MODES, in this process),
connect-twice (as connect_twice.py: one JSON line per connection, a line on stdin between),
isolation (client A leaves a temp table and SET options, then an open transaction, behind
and closes; after a line on stdin client B reports what it sees, as JSON lines) or
login-error (one connection that must fail: its error as one JSON line).
DRIVER is the path of libtdsodbc.so (no odbcinst.ini needed). MODES are FreeTDS
"encryption" settings (off, request, require); the CA file comes from the freetds.conf named
by $FREETDSCONF, which the runner writes.

Unlike db-lib, the ODBC driver binds parameters: pyodbc's execute with parameters arrives as
an RPC (sp_executesql / sp_prepexec / sp_execute), autocommit off as SET IMPLICIT_TRANSACTIONS
ON, commit/rollback as IF @@TRANCOUNT batches or TM requests, a query timeout and
cursor.cancel as ATTENTION. Not here: fast_executemany (parameter arrays), which crashes
pyodbc 5.3.0 on FreeTDS 1.3.17 in the client before anything is sent.
"""
import datetime
import decimal
import json
import re
import sys
import threading
import time

import pyodbc

command, driver, host, port, user, password, database, modes = sys.argv[1:9]
app = sys.argv[9] if len(sys.argv) > 9 else "odbc-workload"
pyodbc.pooling = False  # the driver manager's pool would hide the proxy's


def connect(mode, autocommit=True, appname=None, timeout=20):
    cs = ("DRIVER={%s};SERVER=%s;PORT=%s;UID=%s;PWD=%s;DATABASE=%s;TDS_Version=7.4;"
          "ClientCharset=UTF-8;Encryption=%s;APP=%s" % (driver, host, port, user, password, database, mode, appname or app))
    c = pyodbc.connect(cs, autocommit=autocommit, timeout=timeout)
    # str binds as SQL_WVARCHAR (nvarchar, UTF-16: pyodbc's default); varchar columns reach
    # the client converted to ClientCharset.
    c.setdecoding(pyodbc.SQL_CHAR, encoding="utf-8")
    return c


def number(e):
    """The server's error number, which the driver puts in the message as "(N)"."""
    m = re.findall(r"\((\d+)\)", str(e))
    return int(m[0]) if m else None


S = dict(
    i=-2147483648,
    bi=9007199254740993,
    b=True,
    f=3.141592653589793,
    d=decimal.Decimal("12345.6789"),
    s="héllo wörld ☃",
    smax="0123456789abcdefé" * 700,
    vb=bytes([0, 1, 2, 0xFE, 0xFF]),
    vbmax=bytes([0xDE, 0xAD, 0xBE, 0xEF, 0]) * 3000,
    da=datetime.date(2024, 2, 29),
    dt=datetime.datetime(2024, 2, 29, 13, 14, 15, 123000),
)
COLS = list(S)
CREATE = """CREATE TABLE %s (id INT NOT NULL PRIMARY KEY, i INT NULL, bi BIGINT NULL, b BIT NULL, f FLOAT NULL,
 d DECIMAL(18,4) NULL, s NVARCHAR(50) NULL, smax NVARCHAR(MAX) NULL, vb VARBINARY(16) NULL,
 vbmax VARBINARY(MAX) NULL, da DATE NULL, dt DATETIME NULL)"""


def step(name):
    def wrap(f):
        t0 = time.time()
        try:
            f()
        except Exception as e:
            print("FAIL %s %s: %r" % (MODE, name, e), flush=True)
            sys.exit(1)
        print("ok %s %s (%.0f ms)" % (MODE, name, (time.time() - t0) * 1000), flush=True)
        return f
    return wrap


def workload(mode):
    global MODE
    MODE = mode
    table = "compat_odbc_%s_%d" % (mode, int(time.time() * 1000) % 10**9)
    conn = connect(mode)
    cur = conn.cursor()

    def count(where):
        return cur.execute("SELECT COUNT(*) FROM %s WHERE %s" % (table, where)).fetchone()[0]

    @step("connect and identify")
    def _():
        spid, version, db = cur.execute("SELECT @@SPID, @@VERSION, DB_NAME()").fetchone()
        assert spid > 0 and "Microsoft SQL Server" in version and db.lower() == database.lower(), (spid, version, db)

    @step("create table")
    def _():
        cur.execute(CREATE % table)

    @step("insert with bound parameters (RPC)")
    def _():
        cur.execute("INSERT INTO %s (id, %s) VALUES (?, %s)" % (table, ", ".join(COLS), ", ".join("?" * len(COLS))),
                    [1] + [S[c] for c in COLS])
        assert cur.rowcount == 1, cur.rowcount
        cur.execute("INSERT INTO %s (id, %s) VALUES (?, %s)" % (table, ", ".join(COLS), ", ".join("?" * len(COLS))),
                    [2] + [None] * len(COLS))

    @step("read back every type and NULLs")
    def _():
        row = cur.execute("SELECT %s FROM %s WHERE id = ?" % (", ".join(COLS), table), 1).fetchone()
        bad = []
        for c, v in zip(COLS, row):
            want = S[c]
            if v != want:
                bad.append("%s=%r (%s) want %r" % (c, v if len(repr(v)) < 80 else len(v), type(v).__name__,
                                                   want if len(repr(want)) < 80 else len(want)))
        assert not bad, "; ".join(bad)
        row = cur.execute("SELECT %s FROM %s WHERE id = 2" % (", ".join(COLS), table)).fetchone()
        assert all(v is None for v in row), row

    @step("parameters in a WHERE clause")
    def _():
        n = cur.execute("SELECT COUNT(*) FROM %s WHERE bi = ? AND s = ? AND d = ? AND vb = ? AND da = ?" % table,
                        S["bi"], S["s"], S["d"], S["vb"], S["da"]).fetchone()[0]
        assert n == 1, n

    @step("executemany")
    def _():
        sql = "INSERT INTO %s (id, i, s) VALUES (?, ?, ?)" % table
        cur.executemany(sql, [(100 + k, k, "row %d" % k) for k in range(5)])
        assert count("id BETWEEN 100 AND 104") == 5

    @step("results with many rows and columns")
    def _():
        rows = cur.execute("SELECT id, i, s, smax FROM %s WHERE id >= 100 ORDER BY id" % table).fetchall()
        assert [r.id for r in rows] == [100, 101, 102, 103, 104], rows
        assert rows[0].smax is None and rows[4].s == "row 4"

    tx = {}

    @step("autocommit off: commit (TM requests)")
    def _():
        # FreeTDS begins the transaction with a TM BEGIN_XACT request when autocommit goes off,
        # and commits and rolls back with TM requests that begin the next one (fBeginXact).
        t = tx["conn"] = connect(mode, autocommit=False)
        k = tx["cur"] = t.cursor()
        k.execute("INSERT INTO %s (id, s) VALUES (?, ?)" % table, 10, "committed")
        assert k.execute("SELECT @@TRANCOUNT").fetchone()[0] == 1
        t.commit()
        assert count("id = 10") == 1
        assert k.execute("SELECT @@TRANCOUNT").fetchone()[0] == 1  # the next one

    @step("autocommit off: rollback")
    def _():
        t, k = tx["conn"], tx["cur"]
        k.execute("INSERT INTO %s (id, s) VALUES (?, ?)" % table, 11, "rolled back")
        k.execute("UPDATE %s SET s = N'changed' WHERE id = 10" % table)
        t.rollback()
        assert count("id = 11 OR s = N'changed'") == 0
        k.execute("INSERT INTO %s (id, s) VALUES (?, ?)" % table, 12, "closed open")
        t.close()  # with its transaction open: the server rolls it back
        assert count("id = 12") == 0

    @step("procedure with an OUTPUT parameter")
    def _():
        proc = table + "_double"
        cur.execute("CREATE PROCEDURE %s @in INT, @out INT OUTPUT AS BEGIN SET NOCOUNT ON; SET @out = @in * 2; RETURN 5 END" % proc)
        try:
            out = cur.execute("SET NOCOUNT ON; DECLARE @o INT; EXEC %s ?, @o OUTPUT; SELECT @o" % proc, 21).fetchone()[0]
            assert out == 42, out
        finally:
            cur.execute("DROP PROCEDURE IF EXISTS " + proc)

    @step("server error arrives with its number")
    def _():
        try:
            cur.execute("SELECT * FROM no_such_table_xyz")
        except pyodbc.Error as e:
            assert number(e) == 208 and "no_such_table_xyz" in str(e), e
        else:
            raise AssertionError("no error")
        try:
            cur.execute("INSERT INTO %s (id) VALUES (?)" % table, 1)  # a duplicate key, through an RPC
        except pyodbc.IntegrityError as e:
            assert number(e) == 2627, e
        else:
            raise AssertionError("no error")
        try:
            cur.execute("RAISERROR('custom failure %d', 16, 3, 42)")
        except pyodbc.Error as e:
            assert number(e) == 50000 and "custom failure 42" in str(e), e
        else:
            raise AssertionError("no error")
        assert cur.execute("SELECT 1").fetchone()[0] == 1

    @step("session option round trip")
    def _():
        cur.execute("SET DATEFIRST 3; SET LOCK_TIMEOUT 1234; SET XACT_ABORT ON")
        assert tuple(cur.execute("SELECT @@DATEFIRST, @@LOCK_TIMEOUT, @@OPTIONS & 16384").fetchone()) == (3, 1234, 16384)
        cur.execute("SET DATEFIRST 7; SET LOCK_TIMEOUT -1; SET XACT_ABORT OFF")

    @step("query timeout sends ATTENTION, connection stays usable")
    def _():
        c = connect(mode)
        c.timeout = 1
        k = c.cursor()
        start = time.time()
        try:
            k.execute("WAITFOR DELAY '00:00:20'")
        except pyodbc.OperationalError as e:
            assert "HYT00" in str(e), e
        else:
            raise AssertionError("WAITFOR was not timed out")
        assert time.time() - start < 10
        c.timeout = 0
        assert k.execute("SELECT 2").fetchone()[0] == 2
        c.close()

    @step("cursor.cancel sends ATTENTION, connection stays usable")
    def _():
        c = connect(mode)
        k = c.cursor()
        timer = threading.Timer(0.5, k.cancel)
        timer.start()
        start = time.time()
        try:
            k.execute("WAITFOR DELAY '00:00:20'")
        except pyodbc.Error as e:
            assert "HY008" in str(e), e
        else:
            raise AssertionError("WAITFOR was not cancelled")
        finally:
            timer.cancel()
        assert time.time() - start < 10
        assert k.execute("SELECT 3").fetchone()[0] == 3
        c.close()

    @step("drop table")
    def _():
        cur.execute("DROP TABLE " + table)
        conn.close()


def connect_twice(mode):
    for i in range(2):
        if i == 1:
            sys.stdin.readline()
        conn = connect(mode)
        cur = conn.cursor()
        spid, db, appname = cur.execute("SELECT @@SPID, DB_NAME(), APP_NAME()").fetchone()
        rows = [[r[0], r[1]] for r in cur.execute("SELECT id, s FROM pm_data WHERE id > ? ORDER BY id", 0).fetchall()]
        conn.close()
        print(json.dumps({"spid": spid, "db": db, "app": appname, "rows": rows}), flush=True)


def isolation(mode):
    """Client A leaves state behind on its session and closes; client B (same DSN) must not
    see it. Round "state": a temp table and SET options (autocommit on); round "transaction":
    an uncommitted UPDATE (autocommit off). One JSON line per client per round."""
    for rnd in ("state", "transaction"):
        a = connect(mode, autocommit=(rnd == "state"))
        k = a.cursor()
        spid_a = k.execute("SELECT @@SPID").fetchone()[0]
        if rnd == "state":
            k.execute("CREATE TABLE #left_behind (x INT); INSERT INTO #left_behind VALUES (1)")
            k.execute("SET DATEFIRST 2; SET LOCK_TIMEOUT 777; SET ANSI_NULLS OFF")
        else:
            k.execute("UPDATE pm_data SET s = N'uncommitted' WHERE id = ?", 1)
            assert k.execute("SELECT @@TRANCOUNT").fetchone()[0] == 1
        a.close()
        print(json.dumps({"client": "A", "round": rnd, "spid": spid_a}), flush=True)
        sys.stdin.readline()
        b = connect(mode)
        k = b.cursor()
        seen = {"client": "B", "round": rnd}
        seen["spid"], seen["trancount"], seen["datefirst"], seen["lock_timeout"], seen["ansi_nulls"] = k.execute(
            "SELECT @@SPID, @@TRANCOUNT, @@DATEFIRST, @@LOCK_TIMEOUT, @@OPTIONS & 32").fetchone()
        seen["temp_table"] = k.execute("SELECT OBJECT_ID('tempdb..#left_behind')").fetchone()[0]
        seen["s1"] = k.execute("SELECT s FROM pm_data WHERE id = ?", 1).fetchone()[0]
        b.close()
        print(json.dumps(seen), flush=True)
        sys.stdin.readline()


def login_error(mode):
    start = time.time()
    try:
        connect(mode, timeout=30).close()
    except pyodbc.Error as e:
        print(json.dumps({"code": number(e), "state": e.args[0] if e.args else "", "message": str(e),
                          "ms": int((time.time() - start) * 1000)}), flush=True)
        return
    raise SystemExit("the login succeeded")


MODE = ""
for m in modes.split(","):
    {"workload": workload, "connect-twice": connect_twice, "isolation": isolation, "login-error": login_error}[command](m)
