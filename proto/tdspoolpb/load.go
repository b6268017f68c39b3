package tdspoolpb

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Defaults applied by Load to fields left unset.
const (
	DefaultMaxPacketSize     = maxPacketSize
	DefaultQueueTimeout      = 5 * time.Second
	DefaultLoginTimeout      = 15 * time.Second
	DefaultFirstByteTimeout  = 10 * time.Second
	DefaultBackendHandshake  = 3 * time.Second
	DefaultConnectTimeout    = time.Second
	DefaultTCPKeepalive      = 15 * time.Second
	DefaultRedisCallTimeout  = 250 * time.Millisecond
	DefaultLeaseTTL          = 8 * time.Second
	DefaultHeartbeatInterval = 2 * time.Second
	DefaultKeyPrefix         = "tdspool"
	DefaultPoolMaxIdleTime   = 300 * time.Second
	DefaultPoolMaxLifetime   = time.Hour
	DefaultPoolReauthAfter   = 300 * time.Second

	// MS-TDS 2.2.6.4: the negotiated packet size must lie in 512..32767.
	minPacketSize = 512
	maxPacketSize = 32767
)

// statPrefixPattern keeps a listener's stat prefix one segment of a stat name.
var statPrefixPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// bucketNamePattern keeps bucket names usable inside Envoy stat names and Redis hash tags.
var bucketNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Problems is every problem found in one config, each prefixed with its field path.
type Problems []string

func (p Problems) Error() string {
	return fmt.Sprintf("invalid tdspool config (%d problem(s)): %s", len(p), strings.Join(p, "; "))
}

// Load decodes the JSON config Envoy passes to the module, applies defaults and validates it.
// The error, when not nil, is a Problems listing everything wrong at once, or a decode error
// naming the offending field.
func Load(jsonConfig []byte) (*Config, error) {
	cfg := &Config{}
	if len(strings.TrimSpace(string(jsonConfig))) == 0 {
		return nil, Problems{"config: empty; at least buckets and a route or default_bucket are required"}
	}
	if err := protojson.Unmarshal(jsonConfig, cfg); err != nil {
		return nil, fmt.Errorf("invalid tdspool config: %w", err)
	}
	ApplyDefaults(cfg)
	if problems := Validate(cfg); len(problems) > 0 {
		return nil, problems
	}
	return cfg, nil
}

// ApplyDefaults fills unset fields in place.
func ApplyDefaults(cfg *Config) {
	if cfg.ProxyId == "" {
		host, _ := os.Hostname()
		cfg.ProxyId = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if cfg.Listener == nil {
		cfg.Listener = &Listener{}
	}
	if cfg.Listener.Encryption == EncryptionPolicy_ENCRYPTION_POLICY_UNSPECIFIED {
		cfg.Listener.Encryption = EncryptionPolicy_LOGIN_ONLY_ALLOWED
	}
	if cfg.Listener.MaxPacketSize == 0 {
		cfg.Listener.MaxPacketSize = DefaultMaxPacketSize
	}
	if cfg.Timeouts == nil {
		cfg.Timeouts = &Timeouts{}
	}
	setDefault(&cfg.Timeouts.QueueTimeout, DefaultQueueTimeout)
	setDefault(&cfg.Timeouts.LoginTimeout, DefaultLoginTimeout)
	setDefault(&cfg.Timeouts.FirstByteTimeout, DefaultFirstByteTimeout)
	setDefault(&cfg.Timeouts.BackendHandshakeTimeout, DefaultBackendHandshake)
	if cfg.Redis == nil {
		cfg.Redis = &Redis{}
	}
	if cfg.Redis.KeyPrefix == "" {
		cfg.Redis.KeyPrefix = DefaultKeyPrefix
	}
	setDefault(&cfg.Redis.CallTimeout, DefaultRedisCallTimeout)
	setDefault(&cfg.Redis.LeaseTtl, DefaultLeaseTTL)
	setDefault(&cfg.Redis.HeartbeatInterval, DefaultHeartbeatInterval)
	if cfg.ErrorNumbers == ErrorNumbers_ERROR_NUMBERS_UNSPECIFIED {
		cfg.ErrorNumbers = ErrorNumbers_TRANSIENT
	}
	for _, b := range cfg.Buckets {
		if b.BackendEncryption == BackendEncryption_BACKEND_ENCRYPTION_UNSPECIFIED {
			b.BackendEncryption = BackendEncryption_PLAINTEXT
		}
		if b.BackendLeg == BackendLeg_BACKEND_LEG_UNSPECIFIED {
			b.BackendLeg = BackendLeg_TCP_PROXY
		}
		if b.BackendLeg == BackendLeg_MODULE {
			setDefault(&b.ConnectTimeout, DefaultConnectTimeout)
			setDefault(&b.TcpKeepalive, DefaultTCPKeepalive)
		}
		if b.MaxQueue == 0 {
			b.MaxQueue = 4 * b.MaxConnections
		}
		if b.QueueTimeout == nil {
			b.QueueTimeout = cfg.Timeouts.QueueTimeout
		}
		if b.Pool == nil {
			b.Pool = &Pool{}
		}
		if b.Pool.Mode == PoolMode_POOL_MODE_UNSPECIFIED {
			b.Pool.Mode = PoolMode_POOL_MODE_NONE
		}
		setDefault(&b.Pool.MaxIdleTime, DefaultPoolMaxIdleTime)
		setDefault(&b.Pool.MaxLifetime, DefaultPoolMaxLifetime)
		setDefault(&b.Pool.ReauthAfter, DefaultPoolReauthAfter)
	}
}

func setDefault(d **durationpb.Duration, v time.Duration) {
	if *d == nil {
		*d = durationpb.New(v)
	}
}

// Validate returns every problem in cfg (after ApplyDefaults), each with its field path.
func Validate(cfg *Config) Problems {
	var p Problems
	add := func(path, format string, args ...any) {
		p = append(p, path+": "+fmt.Sprintf(format, args...))
	}

	l := cfg.Listener
	if l.MaxPacketSize < minPacketSize || l.MaxPacketSize > maxPacketSize {
		add("listener.max_packet_size", "%d is outside %d..%d (MS-TDS 2.2.6.4)", l.MaxPacketSize, minPacketSize, maxPacketSize)
	}
	if l.Encryption != EncryptionPolicy_OFF_ALLOWED {
		if l.TlsCertFile == "" || l.TlsKeyFile == "" {
			add("listener.tls_cert_file", "encryption %s needs tls_cert_file and tls_key_file", l.Encryption)
		}
	}
	for _, f := range []struct{ path, file string }{
		{"listener.tls_cert_file", l.TlsCertFile}, {"listener.tls_key_file", l.TlsKeyFile},
	} {
		if f.file != "" {
			if _, err := os.Stat(f.file); err != nil {
				add(f.path, "cannot read %q: %v", f.file, errors.Unwrap(err))
			}
		}
	}

	if strings.ContainsAny(cfg.ProxyId, ": \t\r\n") {
		add("proxy_id", "%q must not contain ':' or whitespace (it starts every Redis lease id)", cfg.ProxyId)
	}
	if cfg.StatPrefix != "" && !statPrefixPattern.MatchString(cfg.StatPrefix) {
		add("stat_prefix", "%q must match %s (it becomes part of every stat name)", cfg.StatPrefix, statPrefixPattern)
	}
	names := map[string]bool{}
	clusters := map[string]string{}
	if len(cfg.Buckets) == 0 {
		add("buckets", "at least one bucket is required")
	}
	for i, b := range cfg.Buckets {
		path := fmt.Sprintf("buckets[%d]", i)
		if !bucketNamePattern.MatchString(b.Name) {
			add(path+".name", "%q must match %s (it becomes part of stat names and Redis keys)", b.Name, bucketNamePattern)
		} else if names[b.Name] {
			add(path+".name", "%q is used by another bucket", b.Name)
		}
		names[b.Name] = true
		if b.Cluster == "" {
			if b.BackendLeg != BackendLeg_MODULE {
				add(path+".cluster", "required: the Envoy cluster that reaches this instance")
			}
		} else if other, dup := clusters[b.Cluster]; dup {
			add(path+".cluster", "%q is also the cluster of bucket %q; a cap is per instance", b.Cluster, other)
		} else {
			clusters[b.Cluster] = b.Name
		}
		if b.MaxConnections == 0 {
			add(path+".max_connections", "required: the instance's connection budget (> 0)")
		}
		validateBackendLeg(add, path, b)
		checkDuration(add, path+".queue_timeout", b.QueueTimeout, 0, time.Hour)
		validatePool(add, path+".pool", b)
	}
	for i, r := range cfg.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		if !names[r.Bucket] {
			add(path+".bucket", "%q is not a configured bucket", r.Bucket)
		}
		for _, m := range []struct{ field, v string }{{"server_name", r.ServerName}, {"database", r.Database}, {"user", r.User}} {
			if strings.Contains(strings.TrimSuffix(m.v, "*"), "*") {
				add(path+"."+m.field, "%q: '*' is only allowed as the last character", m.v)
			}
		}
	}
	if cfg.DefaultBucket != "" && !names[cfg.DefaultBucket] {
		add("default_bucket", "%q is not a configured bucket", cfg.DefaultBucket)
	}
	if cfg.DefaultBucket == "" && len(cfg.Routes) == 0 {
		add("routes", "no routes and no default_bucket: every login would be refused")
	}

	r := cfg.Redis
	for i, a := range r.Addresses {
		if _, _, err := net.SplitHostPort(a); err != nil {
			add(fmt.Sprintf("redis.addresses[%d]", i), "%q is not host:port", a)
		}
	}
	if r.PasswordEnv != "" {
		if _, ok := os.LookupEnv(r.PasswordEnv); !ok {
			add("redis.password_env", "environment variable %q is not set", r.PasswordEnv)
		}
	}
	checkDuration(add, "redis.call_timeout", r.CallTimeout, time.Millisecond, time.Minute)
	checkDuration(add, "redis.lease_ttl", r.LeaseTtl, time.Second, time.Hour)
	checkDuration(add, "redis.heartbeat_interval", r.HeartbeatInterval, 100*time.Millisecond, time.Hour)
	if r.LeaseTtl.AsDuration() <= 2*r.HeartbeatInterval.AsDuration() {
		add("redis.lease_ttl", "%s must exceed twice heartbeat_interval (%s) or live leases expire between renewals",
			r.LeaseTtl.AsDuration(), r.HeartbeatInterval.AsDuration())
	}

	t := cfg.Timeouts
	checkDuration(add, "timeouts.queue_timeout", t.QueueTimeout, 0, time.Hour)
	checkDuration(add, "timeouts.login_timeout", t.LoginTimeout, time.Millisecond, time.Hour)
	checkDuration(add, "timeouts.first_byte_timeout", t.FirstByteTimeout, time.Millisecond, time.Hour)
	checkDuration(add, "timeouts.backend_handshake_timeout", t.BackendHandshakeTimeout, 10*time.Millisecond, time.Hour)
	checkDuration(add, "timeouts.idle_timeout", t.IdleTimeout, 0, 30*24*time.Hour)
	checkDuration(add, "timeouts.drain_timeout", t.DrainTimeout, 0, 24*time.Hour)
	return p
}

// validatePool checks a bucket's pool settings (after ApplyDefaults).
func validatePool(add func(path, format string, args ...any), path string, b *Bucket) {
	pl := b.Pool
	switch pl.Mode {
	case PoolMode_POOL_MODE_NONE:
	case PoolMode_POOL_MODE_SESSION, PoolMode_POOL_MODE_TRANSACTION:
		if b.BackendLeg != BackendLeg_MODULE {
			add(path+".mode", "%s needs backend_leg MODULE: a tcp_proxy upstream closes with its client", pl.Mode)
		}
		if pl.Mode == PoolMode_POOL_MODE_TRANSACTION && pl.MinIdle > 0 {
			// Refuse rather than accept a setting that was never tested in this mode.
			add(path+".min_idle", "warming is not supported with %s yet: leave min_idle at 0", pl.Mode)
		}
	default:
		add(path+".mode", "unknown mode %d", pl.Mode)
	}
	checkDuration(add, path+".max_idle_time", pl.MaxIdleTime, time.Second, 24*time.Hour)
	checkDuration(add, path+".max_lifetime", pl.MaxLifetime, time.Second, 7*24*time.Hour)
	checkDuration(add, path+".reauth_after", pl.ReauthAfter, time.Second, 24*time.Hour)
	if pl.MinIdle > 0 && pl.Mode == PoolMode_POOL_MODE_NONE {
		add(path+".min_idle", "%d needs a pooling mode: without a pool, warm backends serve nobody", pl.MinIdle)
	}
	if pl.MinIdle > 0 && b.MaxConnections > 0 && pl.MinIdle > b.MaxConnections {
		add(path+".min_idle", "%d exceeds max_connections %d: idle backends hold slots", pl.MinIdle, b.MaxConnections)
	}
	w := pl.Warmup
	switch {
	case pl.MinIdle > 0 && w == nil:
		add(path+".warmup", "required when min_idle > 0: warm backends log in with the operator's credentials")
	case pl.MinIdle == 0 && w != nil:
		add(path+".warmup", "set but min_idle is 0: no backend would be warmed")
	}
	if w == nil {
		return
	}
	if w.User == "" {
		add(path+".warmup.user", "required")
	}
	switch {
	case w.PasswordFile != "" && w.PasswordEnv != "":
		add(path+".warmup.password_file", "set both password_file and password_env; use one")
	case w.PasswordFile != "":
		if _, err := os.Stat(w.PasswordFile); err != nil {
			add(path+".warmup.password_file", "cannot read %q: %v", w.PasswordFile, errors.Unwrap(err))
		}
	case w.PasswordEnv != "":
		if _, ok := os.LookupEnv(w.PasswordEnv); !ok {
			add(path+".warmup.password_env", "environment variable %q is not set", w.PasswordEnv)
		}
	default:
		add(path+".warmup.password_file", "required: password_file or password_env (never the password itself)")
	}
}

func checkDuration(add func(path, format string, args ...any), path string, d *durationpb.Duration, lo, hi time.Duration) {
	if d == nil {
		return
	}
	if err := d.CheckValid(); err != nil {
		add(path, "%v", err)
		return
	}
	if v := d.AsDuration(); v < lo || v > hi {
		add(path, "%s is outside %s..%s", v, lo, hi)
	}
}

// Bucket returns the bucket named name, or nil.
func (c *Config) Bucket(name string) *Bucket {
	for _, b := range c.Buckets {
		if b.Name == name {
			return b
		}
	}
	return nil
}
