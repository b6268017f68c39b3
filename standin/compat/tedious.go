package compat

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// tedious is the TDS driver of Node.js applications (and of the mssql package and the ORMs
// built on it). `make setup` installs TediousVersion under .venv/node with npm; the
// workload runs as a node child process.

//go:embed tedious_workload.js
var tediousWorkload []byte

// TediousVersion is the tedious release the tests run (the newest that supports the
// Node.js 20 of Debian; tedious 19 and later need Node.js 22).
const TediousVersion = "18.6.2"

// TediousModes are tedious's encrypt settings: false (no TLS at all: tedious 18 offers no
// login-only encryption), true (TLS throughout) and strict (TDS 8).
var TediousModes = []string{"false", "true", "strict"}

// FindTedious returns the node binary and the node_modules directory that holds tedious
// ($TDSPOOL_NODE_MODULES, else .venv/node/node_modules at the module root), or "" for
// each that is missing.
func FindTedious() (node, modules string) {
	node, _ = exec.LookPath("node")
	modules = os.Getenv("TDSPOOL_NODE_MODULES")
	if modules == "" {
		modules = filepath.Join(moduleRoot(), ".venv", "node", "node_modules")
	}
	if _, err := os.Stat(filepath.Join(modules, "tedious", "package.json")); err != nil {
		modules = ""
	}
	return node, modules
}

// RunTedious runs the tedious workload and returns its output.
func RunTedious(ctx context.Context, node, modules string, t Target, mode string) (string, error) {
	cmd, cleanup, err := tediousCmd(ctx, node, modules, t, mode, "")
	if err != nil {
		return "", err
	}
	defer cleanup()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("tedious %s: %w\n%s", mode, err, out)
	}
	return string(out), nil
}

// RunTediousConnectTwice is RunConnectTwice with tedious.
func RunTediousConnectTwice(ctx context.Context, node, modules string, t Target, mode, app string, between func()) ([]ConnectResult, string, error) {
	cmd, cleanup, err := tediousCmd(ctx, node, modules, t, mode, app)
	if err != nil {
		return nil, "", err
	}
	defer cleanup()
	return connectTwice(cmd, "tedious connect-twice "+mode, between)
}

func tediousCmd(ctx context.Context, node, modules string, t Target, mode, app string) (*exec.Cmd, func(), error) {
	dir, err := os.MkdirTemp("", "tdspool-tedious-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	path := filepath.Join(dir, "tedious_workload.js")
	if err := os.WriteFile(path, tediousWorkload, 0o644); err != nil {
		cleanup()
		return nil, nil, err
	}
	host := t.HostInCert
	if host == "" {
		host = t.Host
	}
	args := []string{"--no-deprecation", path, t.Host, strconv.Itoa(t.Port), t.User, t.Password, t.Database, mode, t.CAFile, host}
	if app != "" {
		args = append(args, app)
	}
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	return cmd, cleanup, nil
}
