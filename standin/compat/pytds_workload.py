"""The compatibility workload for python-tds (pytds).

Usage: python pytds_workload.py HOST PORT USER PASSWORD DATABASE MODE [CAFILE]
MODE: off (no TLS), login-only (TLS for LOGIN7 only), full (TLS throughout).
The same steps as gomssql.go; prints "ok <step>" per step and exits 1 with
the failing step on the first failure. The values mirror compat.Sample.
"""
import datetime
import decimal
import sys
import time
import uuid

import pytds

host, port, user, password, database, mode = sys.argv[1:7]
cafile = sys.argv[7] if len(sys.argv) > 7 else None
port = int(port)

S = dict(
    i=-2147483648,
    bi=9007199254740993,
    b=True,
    f=3.141592653589793,
    d=decimal.Decimal("12345.6789"),
    s="héllo wörld ☃",
    smax="0123456789abcdefé" * 700,
    # pytds sends plain bytes as VARCHAR (a Python 2 heritage); Binary is varbinary
    vb=pytds.Binary(bytes([0, 1, 2, 0xFE, 0xFF])),
    vbmax=pytds.Binary(bytes([0xDE, 0xAD, 0xBE, 0xEF, 0]) * 3000),
    # pytds sends datetime with microsecond precision
    dt=datetime.datetime(2024, 2, 29, 13, 14, 15, 123456),
    g=uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF"),
)
COLS = ["i", "bi", "b", "f", "d", "s", "smax", "vb", "vbmax", "dt", "g"]
CREATE = """CREATE TABLE %s (id INT NOT NULL PRIMARY KEY, i INT NULL, bi BIGINT NULL, b BIT NULL, f FLOAT NULL,
 d DECIMAL(18,4) NULL, s NVARCHAR(50) NULL, smax NVARCHAR(MAX) NULL, vb VARBINARY(16) NULL,
 vbmax VARBINARY(MAX) NULL, dt DATETIME2(7) NULL, g UNIQUEIDENTIFIER NULL)"""


def connect(**kw):
    args = dict(server=host, port=port, user=user, password=password, database=database,
                login_timeout=20, disable_connect_retry=True)
    if mode in ("login-only", "full"):
        args.update(cafile=cafile, validate_host=False, enc_login_only=(mode == "login-only"))
    elif mode != "off":
        raise SystemExit("unknown mode " + mode)
    args.update(kw)
    return pytds.connect(**args)


def step(name):
    def wrap(f):
        try:
            f()
        except Exception as e:  # report the step, then fail
            print("FAIL %s: %r" % (name, e))
            sys.exit(1)
        print("ok", name)
        return f
    return wrap


table = "compat_pytds_%s_%d" % (mode.replace("-", "_"), int(time.time() * 1000) % 10**9)
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
    cur.execute("INSERT INTO %s (id, %s) VALUES (%%s, %s)" % (table, ", ".join(COLS), ", ".join(["%s"] * len(COLS))),
                tuple([1] + [S[c] for c in COLS]))
    assert cur.rowcount == 1, cur.rowcount
    cur.execute("INSERT INTO %s (id) VALUES (%%s)" % table, (2,))


@step("read back every type")
def _():
    cur.execute("SELECT %s FROM %s WHERE id = %%s" % (", ".join(COLS), table), (1,))
    row = cur.fetchone()
    bad = []
    for c, v in zip(COLS, row):
        want = S[c]
        if c == "dt":
            ok = v.replace(tzinfo=None) == want
        else:
            ok = v == want and (isinstance(want, bytes) or type(v) is type(want))
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
    tconn = connect(autocommit=False)  # pytds begins a transaction at once (TM BEGIN)
    tc = tconn.cursor()
    tc.execute("INSERT INTO %s (id, s) VALUES (%%s, %%s)" % table, (10, "committed"))
    tc.execute("SELECT @@TRANCOUNT")
    assert tc.fetchone()[0] == 1
    tconn.commit()  # TM COMMIT with fBeginXact: a new transaction starts
    assert count("id = 10") == 1
    tc.execute("INSERT INTO %s (id, s) VALUES (%%s, %%s)" % table, (11, "rolled back"))
    tc.execute("UPDATE %s SET s = 'changed' WHERE id = 10" % table)
    tconn.rollback()
    tconn.close()


@step("rolled-back transaction")
def _():
    assert count("id = 11 OR s = 'changed'") == 0


@step("prepared statement executed several times")
def _():
    cur.executemany("INSERT INTO %s (id, i) VALUES (%%s, %%s)" % table, [(100 + k, k * k) for k in range(3)])
    handle = cur.callproc("sp_prepare", (pytds.output(param_type="int"), "@id int, @i int",
                                          "INSERT INTO %s (id, i) VALUES (@id, @i)" % table, 1))[0]
    assert isinstance(handle, int) and handle > 0, handle
    assert cur.get_proc_return_status() == 0
    for k in range(3):
        cur.callproc("sp_execute", (handle, 200 + k, k))
    cur.callproc("sp_unprepare", (handle,))
    try:
        cur.callproc("sp_execute", (handle, 299, 0))
    except pytds.Error as e:
        assert e.msg_no == 8179, e
    else:
        raise AssertionError("sp_execute after sp_unprepare succeeded")
    assert count("id BETWEEN 100 AND 299") == 6


@step("output parameter")
def _():
    out = cur.callproc("sp_executesql", ("SET @out = @in * 2", "@in int, @out int OUTPUT", 21, pytds.output(param_type="int")))
    assert out[3] == 42, out


@step("stored procedure with an OUTPUT parameter")
def _():
    proc = table + "_double"
    cur.execute("CREATE PROCEDURE %s @in INT, @out INT OUTPUT AS BEGIN SET NOCOUNT ON; SET @out = @in * 2; RETURN 5 END" % proc)
    try:
        out = cur.callproc(proc, (21, pytds.output(param_type="int")))
        assert out[1] == 42, out
        assert cur.get_proc_return_status() == 5
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
    except pytds.Error as e:
        assert e.msg_no == 2627, e
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
    # pytds's pool resets a reused connection with RPC sp_reset_connection.
    c1 = connect(autocommit=True, pooling=True)
    k1 = c1.cursor()
    k1.execute("CREATE TABLE #scratch (x INT); INSERT INTO #scratch VALUES (1)")
    k1.execute("SELECT COUNT(*), @@SPID FROM #scratch")
    n, spid1 = k1.fetchone()
    assert n == 1
    c1.close()
    c2 = connect(autocommit=True, pooling=True)
    k2 = c2.cursor()
    k2.execute("SELECT @@SPID")
    assert k2.fetchone()[0] == spid1, "pool did not reuse the connection"
    try:
        k2.execute("SELECT COUNT(*) FROM #scratch")
    except pytds.ProgrammingError as e:
        assert e.msg_no == 208, e
    else:
        raise AssertionError("temp table survived the reset")
    c2.close()


@step("cancelled WAITFOR")
def _():
    c = connect(autocommit=True, timeout=0.5)
    k = c.cursor()
    start = time.time()
    try:
        k.execute("WAITFOR DELAY '00:00:20'")
    except pytds.TimeoutError:
        pass
    else:
        raise AssertionError("WAITFOR was not cancelled")
    assert time.time() - start < 10
    k.execute("SELECT 1")  # the connection survived the ATTENTION
    assert k.fetchone()[0] == 1
    c.close()


@step("server errors surface as driver errors")
def _():
    try:
        cur.execute("SELECT * FROM no_such_table_xyz")
    except pytds.ProgrammingError as e:
        assert e.msg_no == 208 and e.severity == 16, e
    else:
        raise AssertionError("no error")
    try:
        cur.execute("RAISERROR('custom failure %d', 16, 3, 42)")
    except pytds.Error as e:
        assert e.msg_no == 50000 and e.state == 3 and "custom failure 42" in str(e), e
    else:
        raise AssertionError("no error")


@step("drop table")
def _():
    cur.execute("DROP TABLE " + table)
    conn.close()
