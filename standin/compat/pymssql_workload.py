"""The compatibility workload for pymssql (FreeTDS db-lib underneath).

Usage: python pymssql_workload.py HOST PORT USER PASSWORD DATABASE MODE [CAFILE]
MODE is FreeTDS's "encryption" setting (off, request, require); the runner
writes it into the freetds.conf named by $FREETDSCONF. pymssql substitutes
parameters on the client, so "insert with parameters" arrives as a plain
SQL_BATCH with literals; server-side prepared statements are driven from
T-SQL (DECLARE/EXEC sp_prepare ... OUTPUT) and the reset through an RPC
call of sp_reset_connection, since pymssql has no pool of its own.
"""
import datetime
import decimal
import sys
import time
import uuid

import pymssql

host, port, user, password, database, mode = sys.argv[1:7]
port = int(port)

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
    dt=datetime.datetime(2024, 2, 29, 13, 14, 15, 123456),
    g=uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF"),
)
COLS = ["i", "bi", "b", "f", "d", "s", "smax", "vb", "vbmax", "dt", "g"]
CREATE = """CREATE TABLE %s (id INT NOT NULL PRIMARY KEY, i INT NULL, bi BIGINT NULL, b BIT NULL, f FLOAT NULL,
 d DECIMAL(18,4) NULL, s NVARCHAR(50) NULL, smax NVARCHAR(MAX) NULL, vb VARBINARY(16) NULL,
 vbmax VARBINARY(MAX) NULL, dt DATETIME2(7) NULL, g UNIQUEIDENTIFIER NULL)"""


def connect(**kw):
    args = dict(server=host, port=port, user=user, password=password, database=database,
                tds_version="7.4", login_timeout=20, use_datetime2=True)
    args.update(kw)
    return pymssql.connect(**args)


def step(name):
    def wrap(f):
        try:
            f()
        except Exception as e:
            print("FAIL %s: %r" % (name, e))
            sys.exit(1)
        print("ok", name)
        return f
    return wrap


def number(e):
    return e.args[0] if e.args and isinstance(e.args[0], int) else None


table = "compat_pymssql_%s_%d" % (mode, int(time.time() * 1000) % 10**9)
conn = connect(autocommit=True)
cur = conn.cursor()


@step("connect and identify")
def _():
    cur.execute("SELECT @@SPID, @@VERSION, DB_NAME(), @@SERVERNAME")
    spid, version, db, server = cur.fetchone()
    assert spid > 0 and "Microsoft SQL Server" in version and db.lower() == database.lower(), (spid, version, db)


@step("create table")
def _():
    cur.execute(CREATE % table)


@step("insert with parameters")
def _():
    vals = [S[c] for c in COLS]
    vals[COLS.index("g")] = str(S["g"])  # pymssql cannot quote uuid.UUID
    cur.execute("INSERT INTO %s (id, %s) VALUES (%%d, %s)" % (table, ", ".join(COLS), ", ".join(["%s"] * len(COLS))),
                tuple([1] + vals))
    assert cur.rowcount == 1, cur.rowcount
    cur.execute("INSERT INTO %s (id) VALUES (%%d)" % table, (2,))


@step("read back every type")
def _():
    cur.execute("SELECT %s FROM %s WHERE id = %%d" % (", ".join(COLS), table), (1,))
    row = cur.fetchone()
    bad = []
    for c, v in zip(COLS, row):
        want = S[c]
        ok = v == want
        if not ok:
            bad.append("%s=%r (%s) want %r" % (c, v if len(repr(v)) < 80 else len(v), type(v).__name__, want if len(repr(want)) < 80 else len(want)))
    assert not bad, "; ".join(bad)
    cur.execute("SELECT %s FROM %s WHERE id = 2" % (", ".join(COLS), table))
    assert all(v is None for v in cur.fetchone())


def count(where):
    cur.execute("SELECT COUNT(*) FROM %s WHERE %s" % (table, where))
    return cur.fetchone()[0]


@step("committed transaction")
def _():
    tconn = connect(autocommit=False)  # pymssql sends BEGIN TRAN at once
    tc = tconn.cursor()
    tc.execute("INSERT INTO %s (id, s) VALUES (%%d, %%s)" % table, (10, "committed"))
    tc.execute("SELECT @@TRANCOUNT")
    assert tc.fetchone()[0] == 1
    tconn.commit()  # COMMIT TRAN, then BEGIN TRAN again
    assert count("id = 10") == 1
    tc.execute("INSERT INTO %s (id, s) VALUES (%%d, %%s)" % table, (11, "rolled back"))
    tc.execute("UPDATE %s SET s = 'changed' WHERE id = 10" % table)
    tconn.rollback()
    tconn.close()


@step("rolled-back transaction")
def _():
    assert count("id = 11 OR s = 'changed'") == 0


@step("SET IMPLICIT_TRANSACTIONS ON, then the driver's rollback")
def _():
    # What ODBC and JDBC send for autocommit off: the INSERT opens the
    # transaction (announced by ENVCHANGE), the driver's rollback ends it.
    c = connect(autocommit=True)
    k = c.cursor()
    k.execute("SET IMPLICIT_TRANSACTIONS ON")
    k.execute("SELECT @@TRANCOUNT")
    assert k.fetchone()[0] == 0  # no table read: no transaction yet
    k.execute("INSERT INTO %s (id, s) VALUES (12, 'implicit')" % table)
    k.execute("SELECT @@TRANCOUNT")
    assert k.fetchone()[0] == 1
    c.rollback()
    k.execute("SET IMPLICIT_TRANSACTIONS OFF")
    c.close()
    assert count("id = 12") == 0


@step("prepared statement executed several times")
def _():
    cur.execute("""DECLARE @h INT;
EXEC sp_prepare @h OUTPUT, N'@id int, @i int', N'INSERT INTO %s (id, i) VALUES (@id, @i)', 1;
EXEC sp_execute @h, 200, 0;
EXEC sp_execute @h, 201, 1;
EXEC sp_execute @h, 202, 2;
EXEC sp_unprepare @h;
SELECT @h""" % table)
    handle = cur.fetchone()[0]
    assert handle > 0, handle
    assert count("id BETWEEN 200 AND 202") == 3


@step("stored procedure with an OUTPUT parameter")
def _():
    proc = table + "_double"
    cur.execute("CREATE PROCEDURE %s @in INT, @out INT OUTPUT AS BEGIN SET NOCOUNT ON; SET @out = @in * 2; RETURN 5 END" % proc)
    try:
        out = cur.callproc(proc, (21, pymssql.output(int)))  # an RPC by name
        assert out[1] == 42, out
    finally:
        cur.execute("DROP PROCEDURE IF EXISTS " + proc)


@step("TRY/CATCH surfaces the error")
def _():
    dup = "INSERT INTO %s (id) VALUES (1)" % table  # id 1 exists
    cur.execute("BEGIN TRY %s END TRY BEGIN CATCH SELECT ERROR_NUMBER(), ERROR_MESSAGE() END CATCH" % dup)
    num, msg = cur.fetchone()
    assert num == 2627 and "duplicate key" in msg, (num, msg)
    try:
        cur.execute("BEGIN TRY %s END TRY BEGIN CATCH THROW; END CATCH" % dup)
    except pymssql.Error as e:
        assert number(e) == 2627, e
    else:
        raise AssertionError("the rethrown error did not surface")


@step("session option round trip")
def _():
    cur.execute("SET DATEFIRST 3; SET LOCK_TIMEOUT 1234; SET XACT_ABORT ON")
    cur.execute("SELECT @@DATEFIRST, @@LOCK_TIMEOUT, @@OPTIONS & 16384")
    assert tuple(cur.fetchone()) == (3, 1234, 16384)
    cur.execute("SET DATEFIRST 7; SET LOCK_TIMEOUT -1; SET XACT_ABORT OFF")
    cur.execute("SELECT @@DATEFIRST, @@LOCK_TIMEOUT, @@OPTIONS & 16384")
    assert tuple(cur.fetchone()) == (7, -1, 0)


@step("temp table gone after reset")
def _():
    cur.execute("CREATE TABLE #scratch (x INT); INSERT INTO #scratch VALUES (1)")
    cur.execute("SELECT COUNT(*) FROM #scratch")
    assert cur.fetchone()[0] == 1
    # An RPC by name, the way pools without the status bit reset sessions.
    conn._conn.init_procedure("sp_reset_connection").execute()
    try:
        cur.execute("SELECT COUNT(*) FROM #scratch")
    except pymssql.Error as e:
        assert number(e) == 208, e
    else:
        raise AssertionError("temp table survived the reset")


@step("cancelled WAITFOR")
def _():
    c = connect(autocommit=True, timeout=1)
    k = c.cursor()
    start = time.time()
    try:
        k.execute("WAITFOR DELAY '00:00:20'")
    except pymssql.Error:
        pass
    else:
        raise AssertionError("WAITFOR was not cancelled")
    assert time.time() - start < 10
    # db-lib's timeout handling closes the connection instead of sending
    # ATTENTION; a fresh connection must work.
    try:
        k.execute("SELECT 1")
        assert k.fetchone()[0] == 1
    except pymssql.InterfaceError:
        c = connect(autocommit=True)
        k = c.cursor()
        k.execute("SELECT 1")
        assert k.fetchone()[0] == 1
    c.close()


@step("server errors surface as driver errors")
def _():
    try:
        cur.execute("SELECT * FROM no_such_table_xyz")
    except pymssql.Error as e:
        assert number(e) == 208, e
    else:
        raise AssertionError("no error")
    try:
        cur.execute("RAISERROR('custom failure %d', 16, 3, 42)")
    except pymssql.Error as e:
        assert number(e) == 50000 and b"custom failure 42" in e.args[1], e
    else:
        raise AssertionError("no error")


@step("drop table")
def _():
    cur.execute("DROP TABLE " + table)
    conn.close()
