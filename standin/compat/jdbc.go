package compat

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// mssql-jdbc is Microsoft's JDBC driver, the driver of Java applications (and of the
// connection pools and ORMs built on JDBC). `make setup-java` fetches JDBCVersion into
// .venv/java and compiles jdbc/JdbcWorkload.java there; each run is one JVM, so each
// batches many checks.

// JDBCVersion is the mssql-jdbc release the tests run (the Makefile's MSSQL_JDBC_VERSION).
const JDBCVersion = "13.6.2.jre11"

//go:embed jdbc/JdbcWorkload.java
var jdbcWorkloadSource []byte

// JDBCModes are mssql-jdbc's encrypt settings: false (the driver still encrypts the login:
// it has no setting that offers no TLS at all), true (TLS throughout) and strict (TDS 8).
var JDBCModes = []string{"false", "true", "strict"}

// JDBCTransport is the client-leg transport each JDBC mode must use.
var JDBCTransport = map[string]string{"false": "login-only", "true": "full", "strict": "strict"}

// JDBC is an installed driver and the compiled workload.
type JDBC struct {
	Java string // the java binary
	Dir  string // holds mssql-jdbc-<JDBCVersion>.jar and classes/
}

// ErrJDBCNotSetUp says the driver or the compiled workload is missing; FindJDBC's callers
// skip on it unless TDSPOOL_JAVA_DIR names the directory (as `make` does).
var ErrJDBCNotSetUp = errors.New("mssql-jdbc not set up")

// FindJDBC returns the installed driver: $TDSPOOL_JAVA_DIR, else .venv/java at the module
// root. It fails if the jar or the compiled workload is missing, or the workload was compiled
// from a source other than this package's (run `make setup-java` again). required reports
// whether the environment asks for the driver (TDSPOOL_JAVA_DIR is set), so that a missing
// one is a failure rather than a skip.
func FindJDBC() (j JDBC, required bool, err error) {
	j.Dir = os.Getenv("TDSPOOL_JAVA_DIR")
	required = j.Dir != ""
	if j.Dir == "" {
		j.Dir = filepath.Join(moduleRoot(), ".venv", "java")
	}
	if j.Java, err = exec.LookPath("java"); err != nil {
		return j, required, fmt.Errorf("%w: no java on PATH: run `make setup-java`", ErrJDBCNotSetUp)
	}
	if _, err := os.Stat(j.jar()); err != nil {
		return j, required, fmt.Errorf("%w: %v: run `make setup-java`", ErrJDBCNotSetUp, err)
	}
	stamp, err := os.ReadFile(filepath.Join(j.Dir, "classes", "JdbcWorkload.sha256"))
	if err != nil {
		return j, required, fmt.Errorf("%w: the workload is not compiled (%v): run `make setup-java`", ErrJDBCNotSetUp, err)
	}
	sum := sha256.Sum256(jdbcWorkloadSource)
	if strings.TrimSpace(string(stamp)) != hex.EncodeToString(sum[:]) {
		return j, true, fmt.Errorf("%w: %s was compiled from another JdbcWorkload.java: run `make setup-java`", ErrJDBCNotSetUp, j.Dir)
	}
	return j, required, nil
}

func (j JDBC) jar() string { return filepath.Join(j.Dir, "mssql-jdbc-"+JDBCVersion+".jar") }

// command is the JVM running one workload command against t. Flags for a short-lived JVM:
// the client compiler only and the serial collector start fastest.
func (j JDBC) command(ctx context.Context, cmd string, t Target, mode, app string) *exec.Cmd {
	host := t.HostInCert
	if host == "" {
		host = t.Host
	}
	args := []string{"-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xss1m", "-Dfile.encoding=UTF-8",
		"-cp", filepath.Join(j.Dir, "classes") + string(os.PathListSeparator) + j.jar(), "JdbcWorkload",
		cmd, t.Host, strconv.Itoa(t.Port), t.User, t.Password, t.Database, mode, t.CAFile, host}
	if app != "" {
		args = append(args, app)
	}
	return exec.CommandContext(ctx, j.Java, args...)
}

// RunJDBC runs the workload once per mode, every step of every mode in one JVM, and returns
// its output.
func RunJDBC(ctx context.Context, j JDBC, t Target, modes ...string) (string, error) {
	mode := strings.Join(modes, ",")
	out, err := j.command(ctx, "workload", t, mode, "").CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("jdbc %s: %w\n%s", mode, err, out)
	}
	return string(out), nil
}

// JDBCRecoveryNegotiated reads from a workload's output whether the driver's connection
// resiliency was acknowledged (the server sent SESSIONRECOVERY in FEATUREEXTACK), once per
// mode the workload ran.
func JDBCRecoveryNegotiated(out string) ([]bool, error) {
	var got []bool
	for _, line := range strings.Split(out, "\n") {
		if _, v, ok := strings.Cut(line, "session-recovery negotiated="); ok {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return got, err
			}
			got = append(got, b)
		}
	}
	if len(got) == 0 {
		return nil, errors.New("no session-recovery line in the workload's output")
	}
	return got, nil
}

// RunJDBCConnectTwice is RunConnectTwice with mssql-jdbc; each result's Recovery says whether
// that connection's resiliency was acknowledged.
func RunJDBCConnectTwice(ctx context.Context, j JDBC, t Target, mode, app string, between func()) ([]ConnectResult, string, error) {
	return connectTwice(j.command(ctx, "connect-twice", t, mode, app), "jdbc connect-twice "+mode, between)
}

// JDBCLoginError is how mssql-jdbc reported a failed login.
type JDBCLoginError struct {
	Code      int    `json:"code"`      // SQLException.getErrorCode(): the server's error number
	State     string `json:"state"`     // SQLException.getSQLState()
	Message   string `json:"message"`   // SQLException.getMessage()
	Transient bool   `json:"transient"` // a java.sql.SQLTransientException
	Millis    int64  `json:"ms"`        // from connect to the exception, retries included
}

// RunJDBCLoginError connects once with the driver's login retry on transient errors
// (connectRetryCount 1, connectRetryInterval 1 s) and returns the exception the login ended
// with; a login that succeeds is an error.
func RunJDBCLoginError(ctx context.Context, j JDBC, t Target, mode, app string) (JDBCLoginError, string, error) {
	out, err := j.command(ctx, "login-error", t, mode, app).CombinedOutput()
	var r JDBCLoginError
	if err != nil {
		return r, string(out), fmt.Errorf("jdbc login-error %s: %w\n%s", mode, err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Code != 0 {
			return r, string(out), nil
		}
	}
	return r, string(out), fmt.Errorf("jdbc login-error %s: no result\n%s", mode, out)
}
