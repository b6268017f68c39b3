"""Connect twice with one DSN, as an application that opens and closes a connection per unit
of work does, with python-tds or pymssql.

Usage: python connect_twice.py DRIVER HOST PORT USER PASSWORD DATABASE MODE APPNAME [CAFILE]
DRIVER: pytds or pymssql. MODE: the driver's encryption setting (compat.PytdsModes; pymssql
reads its setting from freetds.conf, which the runner writes). Each connection runs
SELECT @@SPID, DB_NAME(), APP_NAME() and reads the table pm_data, then closes; prints one
JSON line per connection: {"spid": ..., "db": ..., "app": ..., "rows": [[id, s], ...]}, and
waits for a line on stdin before the second connection.
"""
import json
import sys

driver, host, port, user, password, database, mode, app = sys.argv[1:9]
cafile = sys.argv[9] if len(sys.argv) > 9 else None
port = int(port)


def connect():
    if driver == "pytds":
        import pytds
        args = dict(server=host, port=port, user=user, password=password, database=database,
                    appname=app, login_timeout=20, disable_connect_retry=True, autocommit=True)
        if mode in ("login-only", "full"):
            args.update(cafile=cafile, validate_host=False, enc_login_only=(mode == "login-only"))
        elif mode != "off":
            raise SystemExit("unknown mode " + mode)
        return pytds.connect(**args)
    if driver == "pymssql":
        import pymssql
        return pymssql.connect(server=host, port=port, user=user, password=password, database=database,
                               appname=app, tds_version="7.4", login_timeout=20, autocommit=True)
    raise SystemExit("unknown driver " + driver)


for i in range(2):
    if i == 1:
        sys.stdin.readline()  # the runner says when: after it saw the first close land
    conn = connect()
    cur = conn.cursor()
    cur.execute("SELECT @@SPID, DB_NAME(), APP_NAME()")
    spid, db, appname = cur.fetchone()
    cur.execute("SELECT id, s FROM pm_data ORDER BY id")
    rows = [[r[0], r[1]] for r in cur.fetchall()]
    cur.close()
    conn.close()
    print(json.dumps({"spid": spid, "db": db, "app": appname, "rows": rows}), flush=True)
