package compat

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// pyodbc on FreeTDS's ODBC driver (Debian's tdsodbc, unixODBC's driver manager) is how many
// applications connect. The driver is named by its path in the connection string, so no
// odbcinst.ini is needed; its encryption setting is in the connection string and its CA file
// in a freetds.conf of the run's own ($FREETDSCONF). Each run is one Python process.

//go:embed odbc_workload.py
var odbcWorkload []byte

// ODBCModes are FreeTDS's "encryption" settings: off (PRELOGIN NOT_SUP), request (OFF:
// login-only TLS against an optional server) and require (ON: full TLS). FreeTDS 1.3.17 has
// no strict (TDS 8): with Encryption=strict its connect fails before anything is sent.
var ODBCModes = []string{"off", "request", "require"}

// ODBCTransport is the client-leg transport each mode must use.
var ODBCTransport = map[string]string{"off": "plain", "request": "login-only", "require": "full"}

// ODBC is the Python interpreter with pyodbc and the FreeTDS ODBC driver library.
type ODBC struct {
	Python string
	Driver string // path of libtdsodbc.so
}

// ErrODBCNotSetUp says pyodbc or the FreeTDS ODBC driver is missing.
var ErrODBCNotSetUp = errors.New("pyodbc / FreeTDS ODBC driver not set up: run `make setup`")

// odbcDriverPaths are where Debian's tdsodbc puts the driver.
var odbcDriverPaths = []string{
	"/usr/lib/x86_64-linux-gnu/odbc/libtdsodbc.so",
	"/usr/lib/aarch64-linux-gnu/odbc/libtdsodbc.so",
	"/usr/lib/odbc/libtdsodbc.so",
}

// FindODBC returns the project Python with pyodbc and the driver ($TDSPOOL_ODBC_DRIVER, else
// Debian's path).
func FindODBC() (ODBC, error) {
	o := ODBC{Python: FindPython(), Driver: os.Getenv("TDSPOOL_ODBC_DRIVER")}
	if o.Python == "" || !HasPythonModule(o.Python, "pyodbc") {
		return o, fmt.Errorf("%w (no pyodbc in %q)", ErrODBCNotSetUp, o.Python)
	}
	if o.Driver == "" {
		for _, p := range odbcDriverPaths {
			if _, err := os.Stat(p); err == nil {
				o.Driver = p
				break
			}
		}
	}
	if _, err := os.Stat(o.Driver); o.Driver == "" || err != nil {
		return o, fmt.Errorf("%w (no libtdsodbc.so; Debian package tdsodbc)", ErrODBCNotSetUp)
	}
	return o, nil
}

// command is the Python process running one workload command against t in modes (comma
// separated); cleanup removes its directory.
func (o ODBC) command(ctx context.Context, command string, t Target, modes, app string) (*exec.Cmd, func(), error) {
	dir, err := os.MkdirTemp("", "tdspool-odbc-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	script := filepath.Join(dir, "odbc_workload.py")
	conf := "[global]\n"
	if t.CAFile != "" {
		conf += "\tca file = " + t.CAFile + "\n"
	}
	for name, data := range map[string][]byte{script: odbcWorkload, filepath.Join(dir, "freetds.conf"): []byte(conf)} {
		if err := os.WriteFile(name, data, 0o644); err != nil {
			cleanup()
			return nil, nil, err
		}
	}
	args := []string{script, command, o.Driver, t.Host, strconv.Itoa(t.Port), t.User, t.Password, t.Database, modes}
	if app != "" {
		args = append(args, app)
	}
	cmd := exec.CommandContext(ctx, o.Python, args...)
	cmd.Dir = dir
	// Our own freetds.conf and no odbc.ini/odbcinst.ini of the host's.
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1", "FREETDSCONF="+filepath.Join(dir, "freetds.conf"),
		"ODBCSYSINI="+dir, "ODBCINI="+filepath.Join(dir, "odbc.ini"), "HOME="+dir)
	return cmd, cleanup, nil
}

// RunODBC runs the workload once per mode, every mode in one process, and returns its output.
func RunODBC(ctx context.Context, o ODBC, t Target, modes ...string) (string, error) {
	cmd, cleanup, err := o.command(ctx, "workload", t, strings.Join(modes, ","), "")
	if err != nil {
		return "", err
	}
	defer cleanup()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("odbc %v: %w\n%s", modes, err, out)
	}
	return string(out), nil
}

// RunODBCConnectTwice is RunConnectTwice with pyodbc: the second connection's first query is
// an RPC (a bound parameter).
func RunODBCConnectTwice(ctx context.Context, o ODBC, t Target, mode, app string, between func()) ([]ConnectResult, string, error) {
	cmd, cleanup, err := o.command(ctx, "connect-twice", t, mode, app)
	if err != nil {
		return nil, "", err
	}
	defer cleanup()
	return connectTwice(cmd, "odbc connect-twice "+mode, between)
}

// ODBCIsolation is what client B saw after client A (same DSN) closed with state left
// behind: Round "state" (a temp table and SET options) or "transaction" (an uncommitted
// UPDATE of pm_data row 1, autocommit off).
type ODBCIsolation struct {
	Round       string `json:"round"`
	SPIDA       int    `json:"-"` // client A's @@SPID
	SPID        int    `json:"spid"`
	TranCount   int    `json:"trancount"`
	DateFirst   int    `json:"datefirst"`
	LockTimeout int    `json:"lock_timeout"`
	AnsiNulls   int    `json:"ansi_nulls"` // @@OPTIONS & 32
	TempTable   *int   `json:"temp_table"` // OBJECT_ID('tempdb..#left_behind')
	S1          string `json:"s1"`         // pm_data row 1
}

// RunODBCIsolation runs both rounds; between is called after each client A closed and after
// each client B closed (before the next round's A).
func RunODBCIsolation(ctx context.Context, o ODBC, t Target, mode, app string, between func()) ([]ODBCIsolation, string, error) {
	var res []ODBCIsolation
	cmd, cleanup, err := o.command(ctx, "isolation", t, mode, app)
	if err != nil {
		return nil, "", err
	}
	defer cleanup()
	spidA := 0
	out, err := runStepped(cmd, func(line []byte) bool {
		var m struct {
			Client string `json:"client"`
			SPID   int    `json:"spid"`
		}
		if json.Unmarshal(line, &m) != nil {
			return false
		}
		if m.Client == "A" {
			spidA = m.SPID
		} else {
			var r ODBCIsolation
			_ = json.Unmarshal(line, &r)
			r.SPIDA = spidA
			res = append(res, r)
		}
		between()
		return true
	})
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("%d rounds reported, want 2", len(res))
	}
	if err != nil {
		return res, out, fmt.Errorf("odbc isolation %s: %w\n%s", mode, err, out)
	}
	return res, out, nil
}

// ODBCLoginError is how pyodbc reported a failed login.
type ODBCLoginError struct {
	Code    int    `json:"code"` // the server's error number, from the message's "(N)"
	State   string `json:"state"`
	Message string `json:"message"`
	Millis  int64  `json:"ms"`
}

// RunODBCLoginError connects once and returns the error the login ended with; a login that
// succeeds is an error.
func RunODBCLoginError(ctx context.Context, o ODBC, t Target, mode, app string) (ODBCLoginError, string, error) {
	var r ODBCLoginError
	cmd, cleanup, err := o.command(ctx, "login-error", t, mode, app)
	if err != nil {
		return r, "", err
	}
	defer cleanup()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return r, string(out), fmt.Errorf("odbc login-error %s: %w\n%s", mode, err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Message != "" {
			return r, string(out), nil
		}
	}
	return r, string(out), fmt.Errorf("odbc login-error %s: no result\n%s", mode, out)
}
