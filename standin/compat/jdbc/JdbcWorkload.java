// The compatibility workload for Microsoft's JDBC driver (mssql-jdbc), the driver of Java
// applications. `make setup-java` fetches the pinned driver and compiles this file; the Go
// tests run it (compat.RunJDBC and friends) as one JVM per call, so each call batches many
// checks.
//
// Usage: java -cp CLASSES:DRIVER JdbcWorkload COMMAND HOST PORT USER PASSWORD DATABASE MODE CAFILE CERTHOST [APPNAME]
// MODE: the driver's encrypt property: false (TLS for the login only), true (TLS throughout,
// trustServerCertificate=true) or strict (TDS 8: TLS first; the server's certificate is
// pinned to CAFILE, for the name CERTHOST). The workload takes several, comma-separated, and
// runs once per mode in the one JVM.
// COMMAND:
//   workload      prints "ok <step>" or "FAIL <step>: ..." per step (prefixed "[mode]" when
//                 there are several); exits 1 if any failed.
//   connect-twice connects twice with one URL (application name APPNAME), each time reading
//                 @@SPID, DB_NAME(), APP_NAME() and the table pm_data; one JSON line per
//                 connection ({"spid", "db", "app", "rows"}), and a line on stdin between them.
//   login-error   one connection that must fail at login, with the driver's default login
//                 retry on transient errors (connectRetryCount 1, every 1 s): one JSON line
//                 {"code", "state", "message", "transient", "ms"}.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.sql.CallableStatement;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.SQLTimeoutException;
import java.sql.Savepoint;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.LocalTime;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.UUID;

public final class JdbcWorkload {
    private static String host, port, user, password, database, mode, cafile, certHost;

    public static void main(String[] args) throws Exception {
        if (args.length < 9) {
            System.out.println("usage: JdbcWorkload COMMAND HOST PORT USER PASSWORD DATABASE MODE CAFILE CERTHOST [APPNAME]");
            System.exit(2);
        }
        host = args[1];
        port = args[2];
        user = args[3];
        password = args[4];
        database = args[5];
        mode = args[6];
        cafile = args[7];
        certHost = args[8];
        String app = args.length > 9 ? args[9] : "jdbc-workload";
        switch (args[0]) {
            case "workload":
                String[] modes = mode.split(",");
                for (String m : modes) {
                    mode = m;
                    prefix = modes.length > 1 ? "[" + m + "] " : "";
                    workload(app);
                }
                if (failed > 0) {
                    System.out.println(failed + " steps failed");
                    System.exit(1);
                }
                break;
            case "connect-twice":
                connectTwice(app);
                break;
            case "login-error":
                loginError(app);
                break;
            default:
                System.out.println("unknown command " + args[0]);
                System.exit(2);
        }
    }

    // url is the connection URL an application would use for this mode; extra is appended.
    static String url(String app, String extra) {
        StringBuilder u = new StringBuilder("jdbc:sqlserver://").append(host).append(':').append(port)
                .append(";databaseName=").append(database)
                .append(";applicationName=").append(app)
                .append(";loginTimeout=20");
        switch (mode) {
            case "false":
                u.append(";encrypt=false");
                break;
            case "true":
                u.append(";encrypt=true;trustServerCertificate=true");
                break;
            case "strict":
                u.append(";encrypt=strict;hostNameInCertificate=").append(certHost)
                        .append(";serverCertificate=").append(cafile);
                break;
            default:
                throw new IllegalArgumentException("unknown mode " + mode);
        }
        return u.append(extra).toString();
    }

    static Connection connect(String app, String extra) throws SQLException {
        return DriverManager.getConnection(url(app, extra), user, password);
    }

    interface Step {
        void run() throws Exception;
    }

    static int failed;
    static String prefix = "";

    // step runs one check; a failure is reported and the next steps still run (they share the
    // connection, so a step that needs an earlier one's table fails too), and the run exits 1.
    static boolean step(String name, Step f) {
        try {
            f.run();
        } catch (Throwable e) {
            String code = e instanceof SQLException ? ((SQLException) e).getErrorCode() + " " + ((SQLException) e).getSQLState() + " " : "";
            System.out.println(prefix + "FAIL " + name + ": " + code + e);
            System.out.flush();
            failed++;
            return false;
        }
        System.out.println(prefix + "ok " + name);
        return true;
    }

    static void check(Object got, Object want, String what) {
        if (got instanceof byte[] && want instanceof byte[]) {
            if (!Arrays.equals((byte[]) got, (byte[]) want)) {
                throw new AssertionError(what + ": bytes differ (got " + ((byte[]) got).length + " bytes, want " + ((byte[]) want).length + ")");
            }
            return;
        }
        if (!Objects.equals(got, want)) {
            throw new AssertionError(what + ": got " + show(got) + ", want " + show(want));
        }
    }

    static String show(Object v) {
        if (v == null) {
            return "null";
        }
        String s = v.toString();
        if (s.length() > 80) {
            s = s.substring(0, 80) + "...(" + s.length() + " chars)";
        }
        return s + " (" + v.getClass().getSimpleName() + ")";
    }

    static List<List<Object>> rows(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            return collect(rs);
        }
    }

    static List<List<Object>> collect(ResultSet rs) throws SQLException {
        List<List<Object>> out = new ArrayList<>();
        int n = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            List<Object> row = new ArrayList<>();
            for (int i = 1; i <= n; i++) {
                row.add(rs.getObject(i));
            }
            out.add(row);
        }
        return out;
    }

    static Object one(Connection c, String sql) throws SQLException {
        List<List<Object>> r = rows(c, sql);
        if (r.size() != 1 || r.get(0).size() != 1) {
            throw new AssertionError(sql + ": " + r.size() + " rows, want one value");
        }
        return r.get(0).get(0);
    }

    static void exec(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement()) {
            st.execute(sql);
        }
    }

    static SQLException expectError(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement()) {
            st.execute(sql);
        } catch (SQLException e) {
            return e;
        }
        throw new AssertionError(sql + ": no error");
    }

    // The values the round-trip step binds and expects back.
    static final BigDecimal DEC18 = new BigDecimal("12345.6789");
    static final BigDecimal DEC38 = new BigDecimal("-1234567890123456789012345678.0123456789");
    static final BigDecimal MONEY = new BigDecimal("922337203685477.5807");
    static final LocalDate DATE = LocalDate.of(2024, 2, 29);
    static final LocalTime TIME = LocalTime.of(13, 14, 15, 123456700);
    static final LocalDateTime DT2 = LocalDateTime.of(2024, 2, 29, 13, 14, 15, 123456700);
    static final LocalDateTime DATETIME = LocalDateTime.of(2024, 2, 29, 13, 14, 15, 123000000);
    static final OffsetDateTime DTO = OffsetDateTime.of(2024, 2, 29, 13, 14, 15, 123456700, ZoneOffset.ofHoursMinutes(5, 30));
    static final String GUID = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
    static final String UNICODE = "héllo wörld ☃";

    static void workload(String app) throws Exception {
        Connection[] conn = new Connection[1];
        if (!step("connect", () -> conn[0] = connect(app, ""))) {
            return;
        }
        Connection c = conn[0];
        step("metadata", () -> {
            DatabaseMetaData md = c.getMetaData();
            check(md.getDatabaseProductName(), "Microsoft SQL Server", "product name");
            check(md.getDatabaseMajorVersion(), 16, "major version");
        });
        step("session", () -> {
            List<Object> r = rows(c, "SELECT DB_NAME(), APP_NAME(), @@VERSION").get(0);
            check(r.get(0), database, "DB_NAME()");
            check(r.get(1), app, "APP_NAME()");
            if (!String.valueOf(r.get(2)).startsWith("Microsoft SQL Server")) {
                throw new AssertionError("@@VERSION " + r.get(2));
            }
        });
        step("catalog metadata", () -> {
            String table = "jdbc_meta_" + ProcessHandle.current().pid() + "_" + mode;
            exec(c, "CREATE TABLE " + table + " (id INT NOT NULL PRIMARY KEY, s NVARCHAR(10))");
            try {
                DatabaseMetaData md = c.getMetaData();
                List<String> names = new ArrayList<>();
                try (ResultSet rs = md.getTables(null, null, table, new String[] {"TABLE"})) {
                    while (rs.next()) {
                        names.add(rs.getString("TABLE_CAT") + "." + rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME"));
                    }
                }
                check(names, List.of(database + ".dbo." + table), "getTables");
                List<String> keys = new ArrayList<>();
                try (ResultSet rs = md.getPrimaryKeys(null, null, table)) {
                    while (rs.next()) {
                        keys.add(rs.getString("COLUMN_NAME") + "#" + rs.getShort("KEY_SEQ"));
                    }
                }
                check(keys, List.of("id#1"), "getPrimaryKeys");
            } finally {
                exec(c, "DROP TABLE " + table);
            }
        });
        step("session recovery", () -> System.out.println(prefix + "session-recovery negotiated=" + recoveryNegotiated(c)));
        step("literal types", () -> {
            List<Object> r = rows(c, "SELECT CAST(12345.6789 AS DECIMAL(18,4)), CAST('2024-02-29' AS DATE),"
                    + " CAST('2024-02-29 13:14:15.1234567' AS DATETIME2(7)),"
                    + " CAST('2024-02-29 13:14:15.1234567 +05:30' AS DATETIMEOFFSET(7)),"
                    + " CAST('" + GUID + "' AS UNIQUEIDENTIFIER), CAST(NULL AS INT), N'" + UNICODE + "',"
                    + " CAST(0x0001FEFF AS VARBINARY(MAX)), CAST(42 AS BIGINT), CAST(1 AS BIT)").get(0);
            check(r.get(0), DEC18, "decimal(18,4)");
            check(r.get(1), java.sql.Date.valueOf(DATE), "date");
            check(r.get(2), Timestamp.valueOf(DT2), "datetime2(7)");
            check(((microsoft.sql.DateTimeOffset) r.get(3)).getOffsetDateTime(), DTO, "datetimeoffset(7)");
            check(r.get(4), GUID, "uniqueidentifier");
            check(r.get(5), null, "NULL int");
            check(r.get(6), UNICODE, "nvarchar");
            check(r.get(7), new byte[] {0, 1, (byte) 0xFE, (byte) 0xFF}, "varbinary(max)");
            check(r.get(8), 42L, "bigint");
            check(r.get(9), true, "bit");
        });
        String bigText = "0123456789abcdefé☃".repeat(1500);
        byte[] bigBytes = new byte[100_000];
        for (int i = 0; i < bigBytes.length; i++) {
            bigBytes[i] = (byte) (i * 31 + 7);
        }
        step("parameter types round trip", () -> {
            exec(c, "CREATE TABLE #types (id INT NOT NULL PRIMARY KEY, i INT NULL, bi BIGINT NULL, si SMALLINT NULL,"
                    + " ti TINYINT NULL, b BIT NULL, f FLOAT NULL, r REAL NULL, d184 DECIMAL(18,4) NULL, d3810 DECIMAL(38,10) NULL,"
                    + " m MONEY NULL, dt DATE NULL, tm TIME(7) NULL, dtm DATETIME NULL, dt2 DATETIME2(7) NULL,"
                    + " dto DATETIMEOFFSET(7) NULL, u UNIQUEIDENTIFIER NULL, vb VARBINARY(MAX) NULL, nv NVARCHAR(MAX) NULL,"
                    + " vc VARCHAR(50) NULL)");
            String insert = "INSERT INTO #types VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
            try (PreparedStatement ps = c.prepareStatement(insert)) {
                ps.setInt(1, 1);
                ps.setInt(2, Integer.MIN_VALUE);
                ps.setLong(3, Long.MAX_VALUE);
                ps.setShort(4, (short) -32768);
                ps.setShort(5, (short) 255);
                ps.setBoolean(6, true);
                ps.setDouble(7, Math.PI);
                ps.setFloat(8, 2.5f);
                ps.setBigDecimal(9, DEC18);
                ps.setBigDecimal(10, DEC38);
                ps.setBigDecimal(11, MONEY);
                ps.setObject(12, DATE);
                ps.setObject(13, TIME);
                ps.setTimestamp(14, Timestamp.valueOf(DATETIME));
                ps.setObject(15, DT2);
                ps.setObject(16, DTO);
                ps.setString(17, GUID);
                ps.setBytes(18, bigBytes);
                ps.setString(19, bigText);
                ps.setString(20, "plain ascii");
                check(ps.executeUpdate(), 1, "insert count");
                ps.setInt(1, 2);
                int[] sqlTypes = {Types.INTEGER, Types.BIGINT, Types.SMALLINT, Types.TINYINT, Types.BIT, Types.DOUBLE,
                    Types.REAL, Types.DECIMAL, Types.DECIMAL, Types.DECIMAL, Types.DATE, Types.TIME, Types.TIMESTAMP,
                    Types.TIMESTAMP, microsoft.sql.Types.DATETIMEOFFSET, Types.CHAR, Types.VARBINARY, Types.NVARCHAR,
                    Types.VARCHAR};
                for (int i = 0; i < sqlTypes.length; i++) {
                    ps.setNull(i + 2, sqlTypes[i]);
                }
                check(ps.executeUpdate(), 1, "insert NULLs count");
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT * FROM #types WHERE id = ?")) {
                ps.setInt(1, 1);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), true, "row 1");
                    check(rs.getInt("i"), Integer.MIN_VALUE, "int");
                    check(rs.getLong("bi"), Long.MAX_VALUE, "bigint");
                    check(rs.getShort("si"), (short) -32768, "smallint");
                    check(rs.getShort("ti"), (short) 255, "tinyint");
                    check(rs.getBoolean("b"), true, "bit");
                    check(rs.getDouble("f"), Math.PI, "float");
                    check(rs.getFloat("r"), 2.5f, "real");
                    check(rs.getBigDecimal("d184"), DEC18, "decimal(18,4)");
                    check(rs.getBigDecimal("d3810"), DEC38, "decimal(38,10)");
                    check(rs.getBigDecimal("m"), MONEY, "money");
                    check(rs.getObject("dt", LocalDate.class), DATE, "date");
                    // The driver sends a time as datetime unless sendTimeAsDatetime=false (the
                    // default is true), so SQL Server stores it at datetime's 1/300 s.
                    check(rs.getObject("tm", LocalTime.class), LocalTime.of(13, 14, 15, 123333300), "time(7) sent as datetime");
                    check(rs.getTimestamp("dtm"), Timestamp.valueOf(DATETIME), "datetime");
                    check(rs.getObject("dt2", LocalDateTime.class), DT2, "datetime2(7)");
                    check(rs.getObject("dto", OffsetDateTime.class), DTO, "datetimeoffset(7)");
                    check(rs.getString("u"), GUID, "uniqueidentifier");
                    check(rs.getObject("u", UUID.class), UUID.fromString(GUID), "uniqueidentifier as UUID");
                    check(rs.getBytes("vb"), bigBytes, "varbinary(max)");
                    check(rs.getString("nv"), bigText, "nvarchar(max)");
                    check(rs.getString("vc"), "plain ascii", "varchar");
                    check(rs.next(), false, "one row");
                }
                ps.setInt(1, 2);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), true, "row 2");
                    for (int i = 2; i <= 20; i++) {
                        Object v = rs.getObject(i);
                        check(v, null, "NULL column " + rs.getMetaData().getColumnName(i));
                        check(rs.wasNull(), true, "wasNull column " + i);
                    }
                }
            }
            check(one(c, "SELECT COUNT(*) FROM #types WHERE dto IS NULL AND nv IS NULL"), 1, "NULL rows");
        });
        step("result set metadata", () -> {
            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT d184, dt2, dto, u, nv FROM #types WHERE id = 1")) {
                java.sql.ResultSetMetaData md = rs.getMetaData();
                check(md.getColumnTypeName(1), "decimal", "decimal type name");
                check(md.getPrecision(1), 18, "decimal precision");
                check(md.getScale(1), 4, "decimal scale");
                check(md.getColumnTypeName(2), "datetime2", "datetime2 type name");
                check(md.getScale(2), 7, "datetime2 scale");
                check(md.getColumnTypeName(3), "datetimeoffset", "datetimeoffset type name");
                check(md.getColumnTypeName(4), "uniqueidentifier", "uniqueidentifier type name");
                check(md.getColumnTypeName(5), "nvarchar", "nvarchar type name");
            }
        });
        step("prepared statement reuse", () -> {
            try (PreparedStatement ps = c.prepareStatement("SELECT ? + 1, ?")) {
                for (int i = 0; i < 3; i++) {
                    ps.setInt(1, 40 + i);
                    ps.setString(2, "ünï" + i);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(collect(rs), List.of(List.of(41 + i, "ünï" + i)), "execution " + i);
                    }
                }
            }
        });
        step("batches", () -> {
            exec(c, "CREATE TABLE #batch (id INT, s NVARCHAR(20))");
            try (Statement st = c.createStatement()) {
                st.addBatch("INSERT INTO #batch VALUES (1, N'a')");
                st.addBatch("INSERT INTO #batch VALUES (2, N'b')");
                st.addBatch("UPDATE #batch SET s = N'c' WHERE id <= 2");
                check(Arrays.toString(st.executeBatch()), "[1, 1, 2]", "statement batch counts");
            }
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO #batch VALUES (?, ?)")) {
                for (int i = 3; i <= 5; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "p" + i);
                    ps.addBatch();
                }
                check(Arrays.toString(ps.executeBatch()), "[1, 1, 1]", "prepared batch counts");
            }
            check(one(c, "SELECT COUNT(*) FROM #batch"), 5, "rows");
            try (Statement st = c.createStatement()) {
                boolean isRs = st.execute("SELECT 1; SELECT N'two'; UPDATE #batch SET s = N'd' WHERE id = 1");
                check(isRs, true, "first result is a result set");
                check(collect(st.getResultSet()), List.of(List.of(1)), "first result set");
                check(st.getMoreResults(), true, "second result is a result set");
                check(collect(st.getResultSet()), List.of(List.of("two")), "second result set");
                check(st.getMoreResults(), false, "third result is a count");
                check(st.getUpdateCount(), 1, "third result's count");
            }
        });
        step("stored procedure with OUTPUT", () -> {
            String proc = "jdbc_proc_" + ProcessHandle.current().pid();
            exec(c, "CREATE PROCEDURE " + proc + " @x INT, @y INT OUTPUT AS BEGIN SET @y = 2 * @x; RETURN 7 END");
            try (CallableStatement cs = c.prepareCall("{? = call " + proc + "(?, ?)}")) {
                cs.registerOutParameter(1, Types.INTEGER);
                cs.setInt(2, 21);
                cs.registerOutParameter(3, Types.INTEGER);
                cs.execute();
                check(cs.getInt(1), 7, "return status");
                check(cs.getInt(3), 42, "@y");
            } finally {
                exec(c, "DROP PROCEDURE " + proc);
            }
        });
        step("transaction rollback and commit", () -> {
            exec(c, "CREATE TABLE #t (id INT, s NVARCHAR(10))");
            exec(c, "INSERT INTO #t VALUES (0, N'zero')");
            c.setAutoCommit(false);
            exec(c, "INSERT INTO #t VALUES (1, N'one')");
            exec(c, "UPDATE #t SET s = N'changed' WHERE id = 0");
            check(one(c, "SELECT @@TRANCOUNT"), 1, "@@TRANCOUNT inside");
            c.rollback();
            check(rows(c, "SELECT id, s FROM #t ORDER BY id"), List.of(List.of(0, "zero")), "rows after rollback");
            exec(c, "INSERT INTO #t VALUES (2, N'two')");
            c.commit();
            c.setAutoCommit(true);
            check(rows(c, "SELECT COUNT(*), @@TRANCOUNT FROM #t"), List.of(List.of(2, 0)), "rows, @@TRANCOUNT after commit");
        });
        step("savepoint", () -> {
            c.setAutoCommit(false);
            exec(c, "INSERT INTO #t VALUES (3, N'three')");
            Savepoint sp = c.setSavepoint("jdbc_sp");
            exec(c, "INSERT INTO #t VALUES (4, N'four')");
            c.rollback(sp);
            c.commit();
            c.setAutoCommit(true);
            check(rows(c, "SELECT id FROM #t WHERE id >= 3 ORDER BY id"), List.of(List.of(3)), "rows after rollback to savepoint");
        });
        step("isolation level", () -> {
            c.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
            check(one(c, "SELECT transaction_isolation_level FROM sys.dm_exec_sessions WHERE session_id = @@SPID"), (short) 4, "serializable");
            c.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED);
            check(c.getTransactionIsolation(), Connection.TRANSACTION_READ_COMMITTED, "read committed");
        });
        step("server error", () -> {
            SQLException e = expectError(c, "RAISERROR('jdbc boom', 16, 1)");
            check(e.getErrorCode(), 50000, "RAISERROR number");
            check(e.getMessage(), "jdbc boom", "RAISERROR message");
            e = expectError(c, "SELECT * FROM jdbc_no_such_table");
            check(e.getErrorCode(), 208, "invalid object number");
            check(e.getSQLState(), "S0002", "invalid object SQLState");
            check(e.getMessage(), "Invalid object name 'jdbc_no_such_table'.", "invalid object message");
            check(one(c, "SELECT 1"), 1, "usable after errors");
        });
        step("query timeout", () -> {
            try (Statement st = c.createStatement()) {
                st.setQueryTimeout(1);
                long start = System.nanoTime();
                try {
                    st.execute("WAITFOR DELAY '00:00:10'");
                    throw new AssertionError("WAITFOR finished despite the 1 s query timeout");
                } catch (SQLTimeoutException e) {
                    long ms = (System.nanoTime() - start) / 1_000_000;
                    if (ms > 8000) {
                        throw new AssertionError("timed out after " + ms + " ms");
                    }
                }
            }
            check(one(c, "SELECT 2"), 2, "usable after the timeout");
        });
        step("cancel", () -> {
            try (Statement st = c.createStatement()) {
                Thread canceller = new Thread(() -> {
                    try {
                        Thread.sleep(300);
                        st.cancel();
                    } catch (Exception ignored) {
                        // the statement's own failure reports it
                    }
                });
                canceller.start();
                try {
                    st.execute("WAITFOR DELAY '00:00:10'");
                    throw new AssertionError("WAITFOR finished despite Statement.cancel");
                } catch (SQLException e) {
                    check(e.getMessage(), "The query was canceled.", "cancel message");
                }
                canceller.join();
            }
            check(one(c, "SELECT 3"), 3, "usable after the cancel");
        });
        step("close", c::close);
    }

    // recoveryNegotiated reports whether the server acknowledged SESSIONRECOVERY (the driver's
    // connection resiliency), read from the driver's own state: it has no public API for it.
    static boolean recoveryNegotiated(Connection c) throws Exception {
        Class<?> impl = Class.forName("com.microsoft.sqlserver.jdbc.SQLServerConnection");
        Object conn = c.unwrap(impl);
        Method get = impl.getDeclaredMethod("getSessionRecovery");
        get.setAccessible(true);
        Object recovery = get.invoke(conn);
        Field negotiated = recovery.getClass().getDeclaredField("connectionRecoveryNegotiated");
        negotiated.setAccessible(true);
        return negotiated.getBoolean(recovery);
    }

    static String json(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            if (ch == '"' || ch == '\\') {
                b.append('\\').append(ch);
            } else if (ch < 0x20) {
                b.append(String.format("\\u%04x", (int) ch));
            } else {
                b.append(ch);
            }
        }
        return b.append('"').toString();
    }

    static void connectTwice(String app) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (int i = 0; i < 2; i++) {
            if (i == 1) {
                in.readLine(); // the runner says when
            }
            try (Connection c = connect(app, "")) {
                List<Object> r = rows(c, "SELECT @@SPID, DB_NAME(), APP_NAME()").get(0);
                StringBuilder data = new StringBuilder("[");
                for (List<Object> row : rows(c, "SELECT id, s FROM pm_data ORDER BY id")) {
                    data.append(data.length() > 1 ? "," : "").append('[').append(row.get(0)).append(',').append(json((String) row.get(1))).append(']');
                }
                data.append(']');
                System.out.println("{\"spid\":" + r.get(0) + ",\"db\":" + json((String) r.get(1)) + ",\"app\":" + json((String) r.get(2))
                        + ",\"rows\":" + data + ",\"recovery\":" + recoveryNegotiated(c) + "}");
                System.out.flush();
            }
        }
    }

    static void loginError(String app) throws Exception {
        long start = System.nanoTime();
        try (Connection c = connect(app, ";connectRetryCount=1;connectRetryInterval=1")) {
            System.out.println("FAIL login succeeded");
            System.exit(1);
        } catch (SQLException e) {
            long ms = (System.nanoTime() - start) / 1_000_000;
            System.out.println("{\"code\":" + e.getErrorCode() + ",\"state\":" + json(String.valueOf(e.getSQLState()))
                    + ",\"message\":" + json(String.valueOf(e.getMessage())) + ",\"transient\":" + (e instanceof java.sql.SQLTransientException)
                    + ",\"ms\":" + ms + "}");
        }
    }
}
