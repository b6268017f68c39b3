package compat

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

//go:embed pytds_workload.py
var pytdsWorkload []byte

//go:embed pymssql_workload.py
var pymssqlWorkload []byte

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
	dir, _ := os.Getwd()
	for dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, ".venv", "bin", "python")
			if _, err := os.Stat(p); err == nil {
				return p
			}
			return ""
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

func runScript(ctx context.Context, python string, script []byte, name string, t Target, mode string) (string, error) {
	dir, err := os.MkdirTemp("", "tdspool-compat-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, script, 0o644); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, python, path, t.Host, strconv.Itoa(t.Port), t.User, t.Password, t.Database, mode, t.CAFile)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1", "FREETDSCONF="+filepath.Join(dir, "freetds.conf"), "HOME="+dir)
	// Our own freetds.conf keeps the host's configuration out of the test
	// and carries FreeTDS's encryption setting (pymssql has no parameter).
	conf := "[global]\n"
	if name == "pymssql_workload.py" {
		conf += "\tencryption = " + mode + "\n"
		if t.CAFile != "" {
			conf += "\tca file = " + t.CAFile + "\n"
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "freetds.conf"), []byte(conf), 0o644); err != nil {
		return "", err
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, mode, err, out.String())
	}
	return out.String(), nil
}
