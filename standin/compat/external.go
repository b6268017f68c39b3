package compat

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

//go:embed pytds_workload.py
var pytdsWorkload []byte

//go:embed pymssql_workload.py
var pymssqlWorkload []byte

//go:embed connect_twice.py
var connectTwiceScript []byte

// PytdsModes are the encryption settings python-tds supports: no TLS
// (no cafile → ENCRYPT_NOT_SUP), login-only (cafile + enc_login_only →
// ENCRYPT_OFF) and full (cafile → ENCRYPT_ON). pytds has no TDS 8.
var PytdsModes = []string{"off", "login-only", "full"}

// PymssqlModes are FreeTDS "encryption" settings: off (sends NOT_SUP),
// request (sends OFF: login-only against an optional server) and require
// (sends ON: full TLS).
var PymssqlModes = []string{"off", "request", "require"}

// FindPython returns the interpreter for the Python workloads: $TDSPOOL_PYTHON,
// else the project venv (.venv at the module root, found by walking up from
// the working directory), else "".
func FindPython() string {
	if p := os.Getenv("TDSPOOL_PYTHON"); p != "" {
		return p
	}
	p := filepath.Join(moduleRoot(), ".venv", "bin", "python")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// moduleRoot is the directory of go.mod above the working directory ("" if none).
func moduleRoot() string {
	dir, _ := os.Getwd()
	for dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return ""
}

// HasPythonModule reports whether python can import module.
func HasPythonModule(python, module string) bool {
	return exec.Command(python, "-c", "import "+module).Run() == nil
}

// RunPytds runs the workload with python-tds and returns its output.
func RunPytds(ctx context.Context, python string, t Target, mode string) (string, error) {
	return runScript(ctx, python, pytdsWorkload, "pytds_workload.py", t, mode)
}

// RunPymssql runs the workload with pymssql (FreeTDS underneath).
func RunPymssql(ctx context.Context, python string, t Target, mode string) (string, error) {
	return runScript(ctx, python, pymssqlWorkload, "pymssql_workload.py", t, mode)
}

// ConnectResult is what one connection of a connect-twice run read.
type ConnectResult struct {
	SPID int     `json:"spid"`
	DB   string  `json:"db"`
	App  string  `json:"app"`
	Rows [][]any `json:"rows"`
	// Recovery: the connection's resiliency was acknowledged (mssql-jdbc reports it).
	Recovery bool `json:"recovery"`
}

// RunConnectTwice connects twice with one DSN (driver "pytds" or "pymssql", its encryption
// mode, application name app), each time reading @@SPID, DB_NAME(), APP_NAME() and the
// table pm_data, and closing; between the two it calls between (the first connection is
// closed by then). It returns what each connection read, and the script's output.
func RunConnectTwice(ctx context.Context, python, driver string, t Target, mode, app string, between func()) ([]ConnectResult, string, error) {
	args := append([]string{driver}, scriptArgs(t, mode)[:6]...) // host … mode
	args = append(args, app, t.CAFile)
	cmd, cleanup, err := scriptCmd(ctx, python, connectTwiceScript, "connect_twice.py", t, mode, args)
	if err != nil {
		return nil, "", err
	}
	defer cleanup()
	return connectTwice(cmd, "connect_twice.py "+driver+" "+mode, between)
}

// connectTwice runs a connect-twice script (one JSON result per line, a line on its stdin
// between the two connections) and collects its results.
func connectTwice(cmd *exec.Cmd, what string, between func()) ([]ConnectResult, string, error) {
	var rs []ConnectResult
	out, err := runStepped(cmd, func(line []byte) bool {
		var r ConnectResult
		if json.Unmarshal(line, &r) != nil {
			return false // a diagnostic line; it stays in the output
		}
		rs = append(rs, r)
		if len(rs) == 1 {
			between()
			return true
		}
		return false
	})
	if err == nil && len(rs) != 2 {
		err = fmt.Errorf("%d results, want 2", len(rs))
	}
	if err != nil {
		return rs, out, fmt.Errorf("%s: %w\n%s", what, err, out)
	}
	return rs, out, nil
}

// runStepped runs a script that prints lines and, where onLine says so (true), waits for a
// line on its stdin before it goes on. It returns what the script printed (stdout, then
// stderr) and how it ended.
func runStepped(cmd *exec.Cmd, onLine func(line []byte) (next bool)) (string, error) {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	var out strings.Builder
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		if onLine(lines.Bytes()) {
			_, _ = io.WriteString(stdin, "next\n")
		}
	}
	stdin.Close()
	err = cmd.Wait()
	out.WriteString(stderr.String())
	return out.String(), err
}

// scriptArgs are the workload scripts' positional arguments.
func scriptArgs(t Target, mode string) []string {
	return []string{t.Host, strconv.Itoa(t.Port), t.User, t.Password, t.Database, mode, t.CAFile}
}

func runScript(ctx context.Context, python string, script []byte, name string, t Target, mode string) (string, error) {
	cmd, cleanup, err := scriptCmd(ctx, python, script, name, t, mode, scriptArgs(t, mode))
	if err != nil {
		return "", err
	}
	defer cleanup()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, mode, err, out.String())
	}
	return out.String(), nil
}

// scriptCmd writes script to a temp dir with a freetds.conf of its own and returns the
// command that runs it; cleanup removes the dir.
func scriptCmd(ctx context.Context, python string, script []byte, name string, t Target, mode string, args []string) (*exec.Cmd, func(), error) {
	dir, err := os.MkdirTemp("", "tdspool-compat-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, script, 0o644); err != nil {
		cleanup()
		return nil, nil, err
	}
	cmd := exec.CommandContext(ctx, python, append([]string{path}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1", "FREETDSCONF="+filepath.Join(dir, "freetds.conf"), "HOME="+dir)
	// Our own freetds.conf keeps the host's configuration out of the test
	// and carries FreeTDS's encryption setting (pymssql has no parameter).
	conf := "[global]\n"
	if name == "pymssql_workload.py" || (name == "connect_twice.py" && args[0] == "pymssql") {
		conf += "\tencryption = " + mode + "\n"
		if t.CAFile != "" {
			conf += "\tca file = " + t.CAFile + "\n"
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "freetds.conf"), []byte(conf), 0o644); err != nil {
		cleanup()
		return nil, nil, err
	}
	return cmd, cleanup, nil
}
