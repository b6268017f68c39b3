package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fleet is the operator's side of the coordinator: it reads what Redis holds
// about every proxy, bucket and lease, and changes a bucket for the whole
// fleet (cap, pause/drain/disable, kill one session). Every proxy hears of a
// change at its next call for the bucket, and at once through the control
// channel. It is what tdspoolctl runs; it never takes or releases slots.
type Fleet struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewFleet reads and steers the fleet whose keys start with prefix (the
// proxies' redis.key_prefix; "" means "tdspool").
func NewFleet(rdb redis.UniversalClient, prefix string) *Fleet {
	if prefix == "" {
		prefix = "tdspool"
	}
	return &Fleet{rdb: rdb, prefix: prefix}
}

// ProxyInfo is one proxy's entry in the fleet's proxy table.
type ProxyInfo struct {
	ID      string            `json:"id"`
	Host    string            `json:"host,omitempty"`
	PID     int               `json:"pid"`
	Started time.Time         `json:"started"`
	Seen    time.Time         `json:"seen"` // Redis time of its last heartbeat
	Age     time.Duration     `json:"heartbeat_age_ns"`
	Alive   bool              `json:"alive"` // seen within 3 heartbeats
	Buckets []string          `json:"buckets"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// Now is Redis's clock (every time the fleet keeps comes from it).
func (f *Fleet) Now(ctx context.Context) (time.Time, error) {
	return f.rdb.Time(ctx).Result()
}

// Proxies lists the proxy table, ordered by id.
func (f *Fleet) Proxies(ctx context.Context) ([]ProxyInfo, error) {
	now, err := f.Now(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis TIME: %w", err)
	}
	all, err := f.rdb.HGetAll(ctx, proxiesKey(f.prefix)).Result()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", proxiesKey(f.prefix), err)
	}
	var out []ProxyInfo
	for id, js := range all {
		var rec struct {
			proxyRecord
			Seen int64 `json:"seen"`
		}
		if json.Unmarshal([]byte(js), &rec) != nil {
			continue
		}
		p := ProxyInfo{ID: id, Host: rec.Host, PID: rec.PID, Started: time.UnixMilli(rec.Started),
			Seen: time.UnixMilli(rec.Seen), Buckets: rec.Buckets, Labels: rec.Labels}
		p.Age = now.Sub(p.Seen)
		p.Alive = p.Age <= 3*time.Duration(max(rec.HeartbeatMs, 1))*time.Millisecond
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Buckets names every bucket a proxy in the table serves, sorted.
func (f *Fleet) Buckets(ctx context.Context) ([]string, error) {
	ps, err := f.Proxies(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range ps {
		for _, b := range p.Buckets {
			if !seen[b] {
				seen[b] = true
				out = append(out, b)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// Kinds of LeaseInfo.
const (
	KindLease  = "lease"  // a held slot: a backend connection
	KindWaiter = "waiter" // a request queued for a slot
	KindClient = "client" // a client session holding no slot (transaction pooling)
)

// LeaseInfo is one lease (a held slot: a backend connection), one waiter, or one client record
// (a client session without a slot, which never counts toward the cap).
type LeaseInfo struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Bucket  string    `json:"bucket"`
	Proxy   string    `json:"proxy"`
	Held    bool      `json:"held"`              // a lease (false: a waiter or a client record)
	Ticket  int64     `json:"ticket,omitempty"`  // queue position key for waiters
	Expires time.Time `json:"expires,omitzero"`  // lease expiry unless renewed
	Since   time.Time `json:"since,omitzero"`    // granted (held) or queued (waiting)
	Holder  Holder    `json:"holder,omitzero"`   // client, user, app, database, pins
	Killing bool      `json:"killing,omitempty"` // a kill was asked and not yet taken
}

// ProxyCount is one proxy's share of a bucket.
type ProxyCount struct {
	Held    int `json:"held"`
	Queued  int `json:"queued"`
	Clients int `json:"clients_without_slot,omitempty"`
}

// BucketInfo is one bucket as Redis holds it.
type BucketInfo struct {
	Bucket   string                 `json:"bucket"`
	Cap      int                    `json:"cap"`
	CapBy    string                 `json:"cap_set_by,omitempty"`
	CapAt    time.Time              `json:"cap_set_at,omitzero"`
	State    State                  `json:"state"`
	StateBy  string                 `json:"state_set_by,omitempty"`
	StateAt  time.Time              `json:"state_set_at,omitzero"`
	Held     int                    `json:"in_use"`
	Queued   int                    `json:"queued"`
	Clients  int                    `json:"clients_without_slot"` // client records (never count toward the cap)
	Epoch    string                 `json:"epoch,omitempty"`
	Grants   int64                  `json:"grants_total"`
	PerProxy map[string]*ProxyCount `json:"per_proxy"`
	Leases   []LeaseInfo            `json:"-"`
}

// Bucket reads one bucket: meta, leases, waiters and their holders (a few
// commands, not atomic with each other: a snapshot good for operators).
func (f *Fleet) Bucket(ctx context.Context, bucket string) (BucketInfo, error) {
	k := bucketKeys(f.prefix, bucket)
	bi := BucketInfo{Bucket: bucket, PerProxy: map[string]*ProxyCount{}}
	pipe := f.rdb.Pipeline()
	meta := pipe.HGetAll(ctx, k[keyMeta])
	held := pipe.ZRangeWithScores(ctx, k[keyHolders], 0, -1)
	queued := pipe.ZRangeWithScores(ctx, k[keyQueue], 0, -1)
	info := pipe.HGetAll(ctx, k[keyInfo])
	kills := pipe.SMembers(ctx, k[keyKill])
	proxies := pipe.ZRange(ctx, k[keyProxies], 0, -1)
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return bi, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	// Client records: one hash per proxy that called for the bucket within a lease TTL.
	pipe = f.rdb.Pipeline()
	var clientHashes []*redis.MapStringStringCmd
	for _, px := range proxies.Val() {
		clientHashes = append(clientHashes, pipe.HGetAll(ctx, clientKey(f.prefix, bucket, px)))
	}
	if len(clientHashes) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return bi, fmt.Errorf("bucket %s: client records: %w", bucket, err)
		}
	}
	m := meta.Val()
	bi.Cap, _ = strconv.Atoi(m["cap"])
	bi.CapBy, bi.CapAt = m["cap_by"], msField(m["cap_at"])
	bi.State, bi.StateBy, bi.StateAt = State(m["state"]), m["state_by"], msField(m["state_at"])
	bi.Epoch = m["epoch"]
	bi.Grants, _ = strconv.ParseInt(m["grants"], 10, 64)
	killing := map[string]bool{}
	for _, id := range kills.Val() {
		killing[id] = true
	}
	infos := info.Val()
	add := func(id, kind string, score float64, rec string) {
		l := LeaseInfo{ID: id, Kind: kind, Bucket: bucket, Proxy: ownerOf(id), Held: kind == KindLease, Killing: killing[id]}
		switch kind {
		case KindLease:
			l.Expires = time.UnixMilli(int64(score))
		case KindWaiter:
			l.Ticket = int64(score)
		}
		if rec != "" {
			since, js, _ := strings.Cut(rec, " ")
			l.Since = msField(since)
			var hr holderRecord
			if json.Unmarshal([]byte(js), &hr) == nil {
				l.Holder = hr.Holder
			}
		}
		pc := bi.PerProxy[l.Proxy]
		if pc == nil {
			pc = &ProxyCount{}
			bi.PerProxy[l.Proxy] = pc
		}
		switch kind {
		case KindLease:
			pc.Held++
			bi.Held++
		case KindWaiter:
			pc.Queued++
			bi.Queued++
		case KindClient:
			pc.Clients++
			bi.Clients++
		}
		bi.Leases = append(bi.Leases, l)
	}
	for _, z := range held.Val() {
		id, _ := z.Member.(string)
		add(id, KindLease, z.Score, infos[id])
	}
	for _, z := range queued.Val() {
		id, _ := z.Member.(string)
		add(id, KindWaiter, z.Score, infos[id])
	}
	for _, h := range clientHashes {
		recs := h.Val()
		for _, id := range sortedIDs(recs) {
			add(id, KindClient, 0, recs[id])
		}
	}
	return bi, nil
}

func sortedIDs(m map[string]string) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// setMetaLua sets one operator field of a bucket's meta hash with who and
// when (Redis time), keeping the hash's lifetime.
//
//	KEYS 1 meta. ARGV 1 field (cap, state), 2 value, 3 who, 4 TTL ms for a new hash.
const setMetaLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], ARGV[1] .. '_by', ARGV[3], ARGV[1] .. '_at', now)
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4])) end
return now
`

var scriptSetMeta = redis.NewScript(setMetaLua)

// defaultMetaTTL matches Config.MetaTTL's default for a bucket the fleet has
// not used yet.
const defaultMetaTTL = 24 * time.Hour

func (f *Fleet) setMeta(ctx context.Context, bucket, field, value, by string) error {
	k := bucketKeys(f.prefix, bucket)
	if err := scriptSetMeta.Run(ctx, f.rdb, []string{k[keyMeta]}, field, value, by, defaultMetaTTL.Milliseconds()).Err(); err != nil {
		return fmt.Errorf("bucket %s: setting %s: %w", bucket, field, err)
	}
	if err := f.rdb.Publish(ctx, controlChannel(f.prefix), bucket).Err(); err != nil {
		return fmt.Errorf("bucket %s: %s set, but telling the proxies failed (they see it within a heartbeat): %w", bucket, field, err)
	}
	return nil
}

// SetState pauses, resumes (Serving), drains or disables a bucket for the
// whole fleet. by names who did it (shown by the fleet view).
func (f *Fleet) SetState(ctx context.Context, bucket string, s State, by string) error {
	return f.setMeta(ctx, bucket, "state", string(s), by)
}

// SetCap sets a bucket's fleet-wide cap until a proxy loads a config (the
// most recently loaded config, or this call if it came later, wins). Raising
// it grants queued waiters at once; lowering it ends no session.
func (f *Fleet) SetCap(ctx context.Context, bucket string, cap int, by string) error {
	if cap < 0 {
		return fmt.Errorf("bucket %s: cap %d must be >= 0", bucket, cap)
	}
	return f.setMeta(ctx, bucket, "cap", strconv.Itoa(cap), by)
}

// Kill asks the proxy holding lease id to end that session (with an error to
// its client). The proxy takes the request at its next heartbeat for the
// bucket, which the control channel triggers at once; the lease then goes
// when the session closes.
func (f *Fleet) Kill(ctx context.Context, bucket, id string) error {
	k := bucketKeys(f.prefix, bucket)
	_, err := f.rdb.ZScore(ctx, k[keyHolders], id).Result()
	if err == redis.Nil {
		// A client record (a session holding no slot) is killed the same way.
		var isClient bool
		isClient, err = f.rdb.HExists(ctx, clientKey(f.prefix, bucket, ownerOf(id)), id).Result()
		if err == nil && !isClient {
			return fmt.Errorf("bucket %s: no lease or client %q", bucket, id)
		}
	}
	if err != nil {
		return fmt.Errorf("bucket %s: %w", bucket, err)
	}
	pipe := f.rdb.Pipeline()
	pipe.SAdd(ctx, k[keyKill], id)
	pipe.PExpire(ctx, k[keyKill], time.Minute)
	pipe.Publish(ctx, controlChannel(f.prefix), bucket)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("bucket %s: kill %s: %w", bucket, id, err)
	}
	return nil
}

// ownerOf is the proxy id in a lease id ("<proxyId>:<n>").
func ownerOf(id string) string {
	if i := strings.LastIndexByte(id, ':'); i >= 0 {
		return id[:i]
	}
	return id
}

func msField(s string) time.Time {
	ms, _ := strconv.ParseInt(s, 10, 64)
	return msTime(ms)
}
