// Command tdsbench is tdspool's benchmark: a load generator (tdsbench load), the benchmark
// backend (tdsbench backend: the stand-in in lean mode) and the harness that starts every target and compares them in one
// run (tdsbench run). See bench/README.md.
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tdspool/tdspool/bench/harness"
	"github.com/tdspool/tdspool/bench/load"
	"github.com/tdspool/tdspool/standin"
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage:
  tdsbench run [flags]       start the targets, run the matrix, write bench/results/...
  tdsbench load [flags]      run one workload against one address
  tdsbench backend [flags]   serve the benchmark backend (standin, lean mode)
Run a subcommand with -h for its flags.
`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "backend":
		serveBackend(os.Args[2:])
	case "load":
		runLoad(os.Args[2:])
	case "run":
		if err := harness.Main(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "tdsbench:", err)
			os.Exit(1)
		}
	default:
		usage()
	}
}

func serveBackend(args []string) {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	certFile := fs.String("cert", "", "PEM certificate for TLS (default: self-signed)")
	keyFile := fs.String("key", "", "PEM key of -cert")
	verbose := fs.Bool("v", false, "log connection-level diagnostics")
	loginDelay := fs.Duration("login-delay", 0, "time every login costs before its password is checked (the cost of real authentication)")
	statsFile := fs.String("stats", "", "on SIGUSR1, write the cumulative counters (logins, resets, peak sessions) to this file as JSON")
	fs.Parse(args)
	var cert *tls.Certificate
	if *certFile != "" {
		c, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cert = &c
	}
	cfg := harness.BackendConfig(*addr, cert)
	cfg.LoginDelay = *loginDelay
	if *verbose {
		cfg.Logf = log.Printf
	}
	s, err := standin.New(cfg)
	if err == nil {
		err = s.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", s.Addr())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	for sig := range ch {
		if sig != syscall.SIGUSR1 {
			break
		}
		if *statsFile != "" {
			b, _ := json.Marshal(s.Stats())
			tmp := *statsFile + ".tmp"
			if err := os.WriteFile(tmp, b, 0o644); err == nil {
				_ = os.Rename(tmp, *statsFile)
			}
		}
	}
	s.Close()
}

func runLoad(args []string) {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	var c load.Config
	workload := fs.String("workload", "ping", "ping | login | stream | idle | queue")
	fs.StringVar(&c.Addr, "target", "127.0.0.1:1433", "host:port to connect to")
	fs.StringVar(&c.TLS, "tls", load.TLSDisable, "client TLS: disable | full (TDS 7 full TLS) | login (login-only) | strict (TDS 8)")
	fs.StringVar(&c.CAFile, "ca", "", "PEM certificate to verify the server with (default: trust any)")
	fs.StringVar(&c.Database, "database", "bench", "database in LOGIN7 (tdspool routes on it)")
	fs.IntVar(&c.Concurrency, "c", 16, "concurrent sessions / workers")
	fs.DurationVar(&c.Duration, "d", 10*time.Second, "measured duration")
	fs.DurationVar(&c.Warmup, "warmup", time.Second, "unrecorded warm-up")
	fs.Int64Var(&c.StreamBytes, "stream-bytes", 32<<20, "stream: bytes per result")
	fs.IntVar(&c.Sessions, "sessions", 1000, "idle: sessions to hold")
	fs.DurationVar(&c.Hold, "hold", 20*time.Millisecond, "queue: hold time per session")
	holdIdle := fs.Duration("idle-hold", 5*time.Second, "idle: how long to hold the sessions")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	fs.Parse(args)
	c.Label = *workload + " " + c.Addr
	c.Progress = os.Stderr
	var res load.Result
	var err error
	switch *workload {
	case "ping":
		res, err = load.Ping(c)
	case "login":
		res, err = load.Login(c)
	case "stream":
		res, err = load.Stream(c)
	case "idle":
		c.WhileHeld = func() { time.Sleep(*holdIdle) }
		res, err = load.Idle(c)
	case "queue":
		res, err = load.Queue(c)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *asJSON {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Println(string(b))
		return
	}
	fmt.Println(harness.FormatResult(res))
}
