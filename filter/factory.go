package filter

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/tdspool/tdspool/coordinator"
	"github.com/tdspool/tdspool/envoy/host"
	"github.com/tdspool/tdspool/filter/backend"
	"github.com/tdspool/tdspool/filter/pool"
	"github.com/tdspool/tdspool/proto/tdspoolpb"
	"github.com/tdspool/tdspool/tds"
)

// ClusterFilterStateKey is the typed filter state tcp_proxy reads to pick its upstream cluster
// per connection (Envoy's PerConnectionCluster object).
const ClusterFilterStateKey = "envoy.tcp_proxy.cluster"

// idleTimeoutFilterStateKey overrides tcp_proxy's idle timeout for one connection.
const idleTimeoutFilterStateKey = "envoy.tcp_proxy.per_connection_idle_timeout_ms"

// proxyVersion is the server version tdspool announces in its PRELOGIN reply (16.0.1000, the
// SQL Server 2022 RTM number, which every driver accepts).
const proxyVersion = 0x100003E8

// Factory is one loaded filter config: the validated config, the defined stats, the router and
// the slot provider shared by the listener's connections. It is built on Envoy's main thread
// and read (never written) by the workers.
type Factory struct {
	cfg        *tdspoolpb.Config
	stats      globalStats
	buckets    map[string]*bucketState
	router     router
	slots      Slots
	coordStats *coordStats
	announce   tds.EncryptOption // what our PRELOGIN reply offers by default
	// preloginReplies are our PRELOGIN replies, framed at the default packet size, by the
	// ENCRYPTION value they carry (EncryptOff..EncryptReq): every client gets one.
	preloginReplies  [tds.EncryptReq + 1][]byte
	tlsConfig        *tls.Config // listener certificate for TDS 7.x TLS; nil: no TLS offered
	version          uint32
	loginTimeout     time.Duration
	backendTimeout   time.Duration
	idleTimeout      time.Duration
	firstByteTimeout time.Duration
	now              func() time.Time
	dial             dialBackend
	hasher           *pool.Hasher // keys pooled logins' passwords (per process, random)
	pools            []*bucketPool
	sweeper          *poolSweeper
	drainStats       drainStats
	drainSet         drainSet // open sessions, for a drain (drain.go)
}

type bucketState struct {
	cfg    *tdspoolpb.Bucket
	stats  bucketStats
	target *backend.Target // the MODULE leg's dial target; nil for the tcp_proxy leg
	pool   *bucketPool     // logged-in backends for reuse; nil unless pool mode SESSION or TRANSACTION
	tx     *txBucket       // requests waiting for a backend; nil unless pool mode TRANSACTION
}

// NewFactory loads the JSON config and defines the stats. It is a host.ConfigFactory.
func NewFactory(name string, config []byte, h host.ConfigHost) (host.FilterFactory, error) {
	cfg, err := tdspoolpb.Load(config)
	if err != nil {
		return nil, err
	}
	f, err := newFactory(cfg, h)
	if err != nil {
		return nil, err
	}
	if h.ValidationOnly() {
		f.slots = newLocalSlots(nil) // `envoy --mode validate`: check, connect to nothing
		return f, nil
	}
	if f.slots, err = newSlots(cfg, name, config, f.coordStats); err != nil {
		return nil, err
	}
	f.sweeper = startPoolSweeper(f.pools, f.now)
	registerLive(f)
	return f, nil
}

func newFactory(cfg *tdspoolpb.Config, m host.Metrics) (*Factory, error) {
	d := &metricDefiner{m: m}
	if cfg.StatPrefix != "" {
		d.prefix = "listener." + cfg.StatPrefix + "."
	}
	f := &Factory{
		cfg: cfg, stats: defineGlobalStats(d), drainStats: defineDrainStats(d), buckets: map[string]*bucketState{},
		router:           router{rules: cfg.Routes, defaultBucket: cfg.DefaultBucket},
		version:          proxyVersion,
		loginTimeout:     cfg.Timeouts.LoginTimeout.AsDuration(),
		backendTimeout:   cfg.Timeouts.BackendHandshakeTimeout.AsDuration(),
		idleTimeout:      cfg.Timeouts.IdleTimeout.AsDuration(),
		firstByteTimeout: cfg.Timeouts.FirstByteTimeout.AsDuration(),
		now:              time.Now,
		dial:             dialReal,
	}
	var names []string
	for _, b := range cfg.Buckets {
		bs := &bucketState{cfg: b, stats: defineBucketStats(d, b.Name)}
		if b.BackendLeg == tdspoolpb.BackendLeg_MODULE {
			t, err := buildTarget(b, f.backendPrelogin(), tds.MinPacketSize*8)
			if err != nil {
				return nil, err
			}
			bs.target = t
		}
		if bs.pool = newBucketPool(b); bs.pool != nil {
			f.pools = append(f.pools, bs.pool)
		}
		if b.GetPool().GetMode() == tdspoolpb.PoolMode_POOL_MODE_TRANSACTION {
			bs.tx = &txBucket{}
		}
		f.buckets[b.Name] = bs
		names = append(names, b.Name)
	}
	if d.err != nil {
		return nil, fmt.Errorf("defining stats: %w", d.err)
	}
	if len(f.pools) > 0 {
		h, err := pool.NewHasher()
		if err != nil {
			return nil, err
		}
		f.hasher = h
		f.warmers()
	}
	f.coordStats = newCoordStats(f, names)
	if l := cfg.Listener; l.TlsCertFile != "" {
		tc, err := loadServerTLS(l.TlsCertFile, l.TlsKeyFile)
		if err != nil {
			return nil, err
		}
		f.tlsConfig = tc
	}
	switch {
	case f.tlsConfig == nil:
		// Only possible with OFF_ALLOWED (validation requires a certificate otherwise).
		f.announce = tds.EncryptNotSup
	case cfg.Listener.Encryption == tdspoolpb.EncryptionPolicy_REQUIRE:
		f.announce = tds.EncryptReq
	default:
		// OFF: clients that can encrypt get at least an encrypted LOGIN7.
		f.announce = tds.EncryptOff
	}
	for enc := range f.preloginReplies {
		f.preloginReplies[enc] = tds.AppendPackets(nil, tds.PacketReply, 0,
			tds.ServerPreloginReply(f.version, tds.EncryptOption(enc)).AppendPrelogin(nil), tds.DefaultPacketSize)
	}
	return f, nil
}

// preloginReply is our PRELOGIN reply carrying enc, framed for packetSize.
func (f *Factory) preloginReply(enc tds.EncryptOption, packetSize int) []byte {
	if int(enc) < len(f.preloginReplies) && packetSize == tds.DefaultPacketSize {
		return f.preloginReplies[enc]
	}
	return tds.AppendPackets(nil, tds.PacketReply, 0, tds.ServerPreloginReply(f.version, enc).AppendPrelogin(nil), packetSize)
}

// newSlots builds the Redis coordinator, or a process-local cap when no Redis is configured.
//
// The coordinator's proxy id is proxy_id plus a random instance tag: one Envoy can run several
// coordinators at once (two listeners, or the old and new config during a listener update),
// and a proxy restarted under the same proxy_id must never take a dead instance's lease ids
// for its own.
func newSlots(cfg *tdspoolpb.Config, name string, raw []byte, metrics *coordStats) (Slots, error) {
	if len(cfg.Redis.Addresses) == 0 {
		caps := map[string][2]int{}
		for _, b := range cfg.Buckets {
			caps[b.Name] = [2]int{int(b.MaxConnections), int(b.MaxQueue)}
		}
		return newLocalSlots(caps), nil
	}
	buckets := map[string]coordinator.BucketConfig{}
	for _, b := range cfg.Buckets {
		buckets[b.Name] = coordinator.BucketConfig{Cap: int(b.MaxConnections), MaxQueue: int(b.MaxQueue)}
	}
	r := cfg.Redis
	cc := coordinator.Config{
		Redis: coordinator.RedisConfig{
			Addrs: r.Addresses, MasterName: r.MasterName, Username: r.Username,
			Password: passwordFromEnv(r.PasswordEnv),
		},
		Prefix:       r.KeyPrefix,
		ProxyID:      cfg.ProxyId + "~" + instanceTag(),
		Labels:       map[string]string{"filter_config": name, "config": configGeneration(raw)},
		Buckets:      buckets,
		QueueTimeout: cfg.Timeouts.QueueTimeout.AsDuration(),
		LeaseTTL:     r.LeaseTtl.AsDuration(),
		Heartbeat:    r.HeartbeatInterval.AsDuration(),
		CallTimeout:  r.CallTimeout.AsDuration(),
		// After Redis lost data, live proxies re-assert their leases at their next heartbeat;
		// pausing grants longer than that only delays logins (a new bucket pays it once).
		Grace:     r.HeartbeatInterval.AsDuration() + r.CallTimeout.AsDuration() + 250*time.Millisecond,
		WaiterTTL: max(5*time.Second, 3*r.HeartbeatInterval.AsDuration()),
		Metrics:   metrics,
		OnPanic:   func(string, any) { metrics.panics.Add(1) },
	}
	if r.Tls {
		cc.Redis.TLS = tlsConfigForRedis()
	}
	c, err := coordinator.New(cc)
	if err != nil {
		return nil, fmt.Errorf("redis coordinator: %w", err)
	}
	return coordinatorSlots{c}, nil
}

// instanceTag is 6 random hex digits.
func instanceTag() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// configGeneration names the loaded config for the fleet view: when it was loaded and a short
// hash of its bytes (the same hash on two proxies means the same config).
func configGeneration(raw []byte) string {
	sum := sha256.Sum256(raw)
	return time.Now().UTC().Format(time.RFC3339) + " " + hex.EncodeToString(sum[:4])
}

// NewFilter makes the per-connection filter (worker thread).
func (f *Factory) NewFilter(conn host.Conn) host.Filter {
	s := &session{f: f, conn: conn}
	f.trackSession(s)
	return s
}

// Destroy runs when Envoy drops the config (main thread): the coordinator releases what this
// proxy still holds.
func (f *Factory) Destroy() {
	unregisterLive(f)
	f.drainPools() // idle pooled backends close and give their slots back
	if f.slots != nil {
		_ = f.slots.Close()
	}
}
