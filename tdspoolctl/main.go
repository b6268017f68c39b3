// Command tdspoolctl is the fleet view and the operator's controls for tdspool: it reads what
// Redis holds about every proxy, bucket, lease and waiter (and, given their admin addresses,
// each Envoy's /stats), and changes a bucket for the whole fleet.
//
//	tdspoolctl [flags] pools                 per bucket: state, cap in force (who set it, when), in use, queued, per proxy
//	tdspoolctl [flags] clients [BUCKET]      every client session and waiter: proxy, client, user, app, database, since, pins
//	tdspoolctl [flags] servers               backend connections per bucket and proxy, per login idle/in use (and Envoy's counts)
//	tdspoolctl [flags] proxies               every proxy: heartbeat age, config generation, buckets
//	tdspoolctl [flags] pause|resume|drain|disable BUCKET
//	tdspoolctl [flags] set-cap BUCKET N
//	tdspoolctl [flags] kill ID|CLIENT_ADDRESS       (a lease id, a client record id, or a client's address)
//
// Flags: -redis host:port (default $TDSPOOL_REDIS or 127.0.0.1:6379), -prefix (the proxies'
// redis.key_prefix), -password-env VAR, -json, -admin host:port[,host:port...], -by NAME.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tdspool/tdspool/coordinator"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the global flags.
type options struct {
	redis, prefix, passwordEnv, by string
	admins                         []string
	json                           bool
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tdspoolctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var admins string
	defRedis := os.Getenv("TDSPOOL_REDIS")
	if defRedis == "" {
		defRedis = "127.0.0.1:6379"
	}
	fs.StringVar(&o.redis, "redis", defRedis, "Redis address (host:port)")
	fs.StringVar(&o.prefix, "prefix", "tdspool", "key prefix (the proxies' redis.key_prefix)")
	fs.StringVar(&o.passwordEnv, "password-env", "", "environment variable holding the Redis password")
	fs.BoolVar(&o.json, "json", false, "print JSON instead of a table")
	fs.StringVar(&admins, "admin", "", "Envoy admin addresses (host:port, comma separated) to read /stats from")
	fs.StringVar(&o.by, "by", defaultBy(), "who is acting (shown in the fleet view and in clients' error texts)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: tdspoolctl [flags] pools|clients [BUCKET]|servers|proxies|pause|resume|drain|disable BUCKET|set-cap BUCKET N|kill ID|CLIENT_ADDRESS")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if admins != "" {
		o.admins = strings.Split(admins, ",")
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	opts := &redis.Options{Addr: o.redis, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second}
	if o.passwordEnv != "" {
		opts.Password = os.Getenv(o.passwordEnv)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &ctl{o: o, fleet: coordinator.NewFleet(rdb, o.prefix), out: stdout}
	if err := c.do(ctx, fs.Arg(0), fs.Args()[1:]); err != nil {
		fmt.Fprintln(stderr, "tdspoolctl:", err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

func defaultBy() string {
	name := "operator"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

type ctl struct {
	o     options
	fleet *coordinator.Fleet
	out   io.Writer
}

func (c *ctl) do(ctx context.Context, cmd string, args []string) error {
	need := func(n int, what string) error {
		if len(args) != n {
			return fmt.Errorf("%w: tdspoolctl %s %s", errUsage, cmd, what)
		}
		return nil
	}
	switch cmd {
	case "pools":
		return c.pools(ctx)
	case "clients":
		if len(args) > 1 {
			return need(1, "[BUCKET]")
		}
		return c.clients(ctx, args)
	case "servers":
		return c.servers(ctx)
	case "proxies":
		return c.proxies(ctx)
	case "pause", "resume", "drain", "disable":
		if err := need(1, "BUCKET"); err != nil {
			return err
		}
		st := map[string]coordinator.State{"pause": coordinator.Paused, "resume": coordinator.Serving,
			"drain": coordinator.StateDraining, "disable": coordinator.StateDisabled}[cmd]
		if err := c.fleet.SetState(ctx, args[0], st, c.o.by); err != nil {
			return err
		}
		return c.done(map[string]any{"bucket": args[0], "state": st.String(), "by": c.o.by})
	case "set-cap":
		if err := need(2, "BUCKET N"); err != nil {
			return err
		}
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 0 {
			return fmt.Errorf("%w: cap %q is not a number >= 0", errUsage, args[1])
		}
		if err := c.fleet.SetCap(ctx, args[0], n, c.o.by); err != nil {
			return err
		}
		return c.done(map[string]any{"bucket": args[0], "cap": n, "by": c.o.by})
	case "kill":
		if err := need(1, "ID|CLIENT_ADDRESS"); err != nil {
			return err
		}
		return c.kill(ctx, args[0])
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}

// done reports an action.
func (c *ctl) done(v map[string]any) error {
	if c.o.json {
		return json.NewEncoder(c.out).Encode(v)
	}
	var parts []string
	for _, k := range []string{"bucket", "state", "cap", "lease", "client", "proxy", "by"} {
		if x, ok := v[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%v", k, x))
		}
	}
	_, err := fmt.Fprintln(c.out, "ok", strings.Join(parts, " "))
	return err
}

// allBuckets reads every bucket the proxy table knows.
func (c *ctl) allBuckets(ctx context.Context) ([]coordinator.BucketInfo, error) {
	names, err := c.fleet.Buckets(ctx)
	if err != nil {
		return nil, err
	}
	var out []coordinator.BucketInfo
	for _, n := range names {
		bi, err := c.fleet.Bucket(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, bi)
	}
	return out, nil
}

func (c *ctl) kill(ctx context.Context, target string) error {
	bs, err := c.allBuckets(ctx)
	if err != nil {
		return err
	}
	// By id: any lease (a session's, or a pooled backend's: idle, it is closed) or client
	// record. By address: the client's session (a transaction-pooled backend serving it is
	// not the session; its client record is).
	var found []coordinator.LeaseInfo
	for _, b := range bs {
		for _, l := range b.Leases {
			if l.Kind == coordinator.KindWaiter || !l.Held && l.Kind != coordinator.KindClient {
				continue
			}
			if l.ID == target || l.Holder.Client == target && clientSession(l) {
				found = append(found, l)
			}
		}
	}
	switch len(found) {
	case 0:
		return fmt.Errorf("no session with lease id, client id or client address %q", target)
	case 1:
	default:
		return fmt.Errorf("%d sessions match %q; give an id (tdspoolctl clients)", len(found), target)
	}
	l := found[0]
	if err := c.fleet.Kill(ctx, l.Bucket, l.ID); err != nil {
		return err
	}
	return c.done(map[string]any{"bucket": l.Bucket, "lease": l.ID, "client": l.Holder.Client, "proxy": l.Proxy, "by": c.o.by})
}
