// The compatibility workload for tedious, the TDS driver of Node.js applications.
//
// Usage: node tedious_workload.js HOST PORT USER PASSWORD DATABASE MODE CAFILE CERTHOST [APPNAME]
// MODE: tedious's encrypt option: false (no TLS), true (TLS throughout) or strict (TDS 8:
// TLS first). The server's certificate is checked against CAFILE for the
// name CERTHOST.
// Without APPNAME: the workload (prints "ok <step>" per step, exits 1 on the first failure).
// With APPNAME: connect twice with one configuration, as compat.RunConnectTwice does: one
// JSON line per connection ({"spid", "db", "app", "rows"}), and a line on stdin between them.
'use strict';
const fs = require('fs');
const readline = require('readline');
const { Connection, Request, TYPES } = require('tedious');

const [host, port, user, password, database, mode, cafile, certHost, app] = process.argv.slice(2);

function connect(appName) {
  const options = {
    port: Number(port), database, appName: appName || 'tedious-workload',
    encrypt: mode === 'strict' ? 'strict' : mode === 'true',
    connectTimeout: 20000, requestTimeout: 20000,
  };
  options.trustServerCertificate = false;
  options.serverName = certHost;
  options.cryptoCredentialsDetails = { ca: fs.readFileSync(cafile) };
  const conn = new Connection({ server: host, authentication: { type: 'default', options: { userName: user, password } }, options });
  return new Promise((resolve, reject) => {
    conn.on('connect', (err) => (err ? reject(err) : resolve(conn)));
    conn.connect();
  });
}

// query runs sql (with params [[name, type, value]]) and resolves to its rows as arrays.
function query(conn, sql, params = []) {
  return new Promise((resolve, reject) => {
    const rows = [];
    const req = new Request(sql, (err) => (err ? reject(err) : resolve(rows)));
    for (const [name, type, value, opts] of params) req.addParameter(name, type, value, opts);
    req.on('row', (cols) => rows.push(cols.map((c) => c.value)));
    conn.execSql(req);
  });
}

// tx runs one of tedious's transaction calls (transaction-manager requests on the wire).
function tx(conn, fn, name) {
  return new Promise((resolve, reject) => {
    const done = (err) => (err ? reject(err) : resolve());
    if (fn === 'beginTransaction') conn.beginTransaction(done, name);
    else conn[fn](done);
  });
}

function close(conn) {
  return new Promise((resolve) => { conn.on('end', resolve); conn.close(); });
}

function assertEqual(got, want, what) {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}

async function step(name, f) {
  try {
    await f();
  } catch (e) {
    console.log(`FAIL ${name}: ${e && (e.number ? e.number + ' ' : '') + e.message}`);
    process.exit(1);
  }
  console.log('ok', name);
}

async function connectTwice() {
  const lines = readline.createInterface({ input: process.stdin });
  const next = lines[Symbol.asyncIterator]();
  for (let i = 0; i < 2; i++) {
    if (i === 1) await next.next(); // the runner says when
    const conn = await connect(app);
    const [[spid, db, appName]] = await query(conn, 'SELECT @@SPID, DB_NAME(), APP_NAME()');
    const rows = await query(conn, 'SELECT id, s FROM pm_data ORDER BY id');
    await close(conn);
    console.log(JSON.stringify({ spid, db, app: appName, rows }));
  }
  lines.close();
}

async function workload() {
  let conn;
  await step('connect', async () => { conn = await connect(); });
  await step('session', async () => {
    const [[db, app, version]] = await query(conn, 'SELECT DB_NAME(), APP_NAME(), @@VERSION');
    assertEqual([db, app], [database, 'tedious-workload'], 'DB_NAME(), APP_NAME()');
    if (!String(version).startsWith('Microsoft SQL Server')) throw new Error(`@@VERSION ${version}`);
  });
  await step('parameters round trip', async () => {
    const when = new Date(Date.UTC(2024, 1, 29, 13, 14, 15, 123));
    await query(conn, 'CREATE TABLE #types (i INT, s NVARCHAR(50), b BIT, f FLOAT, d DATETIME2(3), v VARBINARY(16), m DECIMAL(18,4))');
    await query(conn, 'INSERT INTO #types VALUES (@i, @s, @b, @f, @d, @v, @m)',
      [['i', TYPES.Int, -2147483648], ['s', TYPES.NVarChar, 'héllo wörld ☃'], ['b', TYPES.Bit, true],
        ['f', TYPES.Float, 3.141592653589793], ['d', TYPES.DateTime2, when], ['v', TYPES.VarBinary, Buffer.from([0, 1, 0xfe, 0xff])],
        ['m', TYPES.Decimal, 12345.6789, { precision: 18, scale: 4 }]]); // tedious's default scale is 0
    const [row] = await query(conn, 'SELECT i, s, b, f, d, v, m FROM #types');
    assertEqual([row[0], row[1], row[2], row[3], row[4].toISOString(), Buffer.from(row[5]).toString('hex'), row[6]],
      [-2147483648, 'héllo wörld ☃', true, 3.141592653589793, when.toISOString(), '0001feff', 12345.6789], 'row');
  });
  await step('parameter echo', async () => {
    const [row] = await query(conn, 'SELECT @i + 1, @b, @s', [['i', TYPES.Int, 41], ['b', TYPES.Bit, true], ['s', TYPES.NVarChar, 'ünï']]);
    assertEqual(row, [42, true, 'ünï'], 'SELECT @i + 1, @b, @s');
  });
  await step('transaction rollback and commit', async () => {
    await query(conn, 'CREATE TABLE #t (id INT)');
    await tx(conn, 'beginTransaction', 'tx');
    await query(conn, 'INSERT INTO #t VALUES (1)');
    await tx(conn, 'rollbackTransaction');
    assertEqual(await query(conn, 'SELECT COUNT(*) FROM #t'), [[0]], 'rows after rollback');
    await tx(conn, 'beginTransaction', 'tx2');
    await query(conn, 'INSERT INTO #t VALUES (2)');
    await tx(conn, 'commitTransaction');
    assertEqual(await query(conn, 'SELECT COUNT(*), @@TRANCOUNT FROM #t'), [[1, 0]], 'rows, @@TRANCOUNT after commit');
  });
  await step('procedure with OUTPUT', async () => {
    const proc = `tedious_twice_${process.pid}`;
    await query(conn, `CREATE PROCEDURE ${proc} @x INT, @y INT OUTPUT AS BEGIN SET @y = 2 * @x; RETURN 7 END`);
    const out = {};
    await new Promise((resolve, reject) => {
      const req = new Request(proc, (err) => (err ? reject(err) : resolve()));
      req.addParameter('x', TYPES.Int, 21);
      req.addOutputParameter('y', TYPES.Int);
      req.on('returnValue', (name, value) => { out[name] = value; });
      conn.callProcedure(req);
    });
    await query(conn, `DROP PROCEDURE ${proc}`);
    assertEqual(out.y, 42, '@y');
  });
  await step('server error', async () => {
    try {
      await query(conn, "RAISERROR('tedious boom', 16, 1)");
    } catch (e) {
      assertEqual([e.number, e.message], [50000, 'tedious boom'], 'error');
      return;
    }
    throw new Error('no error');
  });
  await step('close', () => close(conn));
}

(app ? connectTwice() : workload()).catch((e) => { console.log('FAIL', e && e.message); process.exit(1); });
