package coordinator

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The fleet view's records that change while a slot is held, and client records.
//
// A lease's holder changes when the backend connection it stands for changes hands (a pooled
// backend lent to another client, or back idle in its pool): Lease.SetHolder. Client records
// stand for client sessions that hold no slot (a transaction-pooled client between requests):
// they never count toward the cap, they live in a hash of their own per proxy and bucket
// (P:{b}:c:<proxyId>, id -> "<since ms> <holder JSON>", expiring LeaseTTL after the proxy's
// last heartbeat for the bucket), and an operator can kill them like leases.
//
// None of this touches Redis in the caller's path: a change is marked and the bucket's worker
// writes every change of the last holderFlushDelay in one script call (fleetLua), so a pooled
// login never waits for Redis and a busy pool costs at most one small call per bucket per
// holderFlushDelay.

// holderFlushDelay batches holder and client-record changes before they go to Redis.
const holderFlushDelay = 100 * time.Millisecond

// Holder states (Holder.State).
const (
	// HolderIdle: the lease's backend connection sits idle in a pool, serving nobody.
	HolderIdle = "idle"
)

// fleetState is a bucket's pending fleet-view writes (guarded by bucket.mu).
type fleetState struct {
	holderDirty map[string]bool    // lease id -> restamp its since
	clients     map[string]*Client // this proxy's client records of the bucket
	clientDirty map[string]bool    // client id -> restamp its since
	clientGone  map[string]struct{}
	timerArmed  bool
	due         bool // a flush is due (timer fired)
	resync      bool // Redis lost the client hash: write every record again
}

// Client is one client session without a slot in the fleet view (a transaction-pooled
// client): listed by tdspoolctl clients, ended by tdspoolctl kill. It never counts toward the
// cap. Remove it when the session ends. Methods are cheap, never call Redis, and are safe on a
// nil *Client (no Redis).
type Client struct {
	b      *bucket
	id     string
	holder Holder
	onKill func()
}

// AddClient records a client session of bucket holding no slot. onKill is called once, on a
// coordinator goroutine, when an operator kills it. Nil for an unknown bucket or a closed
// coordinator.
func (c *Coordinator) AddClient(bucket string, h Holder, onKill func()) *Client {
	b := c.bucket(bucket)
	if b == nil || c.closed.Load() {
		return nil
	}
	cl := &Client{b: b, id: c.cfg.ProxyID + ":c" + strconv.FormatUint(c.seq.Add(1), 36), holder: h, onKill: onKill}
	b.mu.Lock()
	b.fleetLocked().clients[cl.id] = cl
	b.fs.clientDirty[cl.id] = true
	b.armFleetFlushLocked()
	b.mu.Unlock()
	return cl
}

// ID is the client record's id ("<proxyId>:c<n>").
func (cl *Client) ID() string {
	if cl == nil {
		return ""
	}
	return cl.id
}

// SetPins records why the client's session is pinned.
func (cl *Client) SetPins(pins string) {
	if cl == nil {
		return
	}
	b := cl.b
	b.mu.Lock()
	if _, ok := b.fleetLocked().clients[cl.id]; ok && cl.holder.Pins != pins {
		cl.holder.Pins = pins
		if _, dirty := b.fs.clientDirty[cl.id]; !dirty {
			b.fs.clientDirty[cl.id] = false
		}
		b.armFleetFlushLocked()
	}
	b.mu.Unlock()
}

// Remove drops the record (the session ended). Idempotent.
func (cl *Client) Remove() {
	if cl == nil {
		return
	}
	b := cl.b
	b.mu.Lock()
	fs := b.fleetLocked()
	if _, ok := fs.clients[cl.id]; ok {
		delete(fs.clients, cl.id)
		delete(fs.clientDirty, cl.id)
		fs.clientGone[cl.id] = struct{}{}
		b.armFleetFlushLocked()
	}
	b.mu.Unlock()
}

// SetHolder says who the lease's backend connection serves now (another client, or Idle in its
// pool); its "since" restarts. Redis hears of it within holderFlushDelay. Cheap; safe from any
// goroutine.
func (l *Lease) SetHolder(h Holder) {
	b := l.b
	b.mu.Lock()
	if _, ok := b.held[l.id]; ok && l.holder != h {
		l.holder = h
		b.fleetLocked().holderDirty[l.id] = true
		b.armFleetFlushLocked()
	}
	b.mu.Unlock()
}

// fleetLocked returns the bucket's fleet state, made on first use.
func (b *bucket) fleetLocked() *fleetState {
	if b.fs.clients == nil {
		b.fs = fleetState{holderDirty: map[string]bool{}, clients: map[string]*Client{},
			clientDirty: map[string]bool{}, clientGone: map[string]struct{}{}}
	}
	return &b.fs
}

// armFleetFlushLocked has the worker write pending changes within holderFlushDelay.
func (b *bucket) armFleetFlushLocked() {
	if b.fs.timerArmed {
		return
	}
	b.fs.timerArmed = true
	time.AfterFunc(holderFlushDelay, func() {
		b.mu.Lock()
		b.fs.timerArmed = false
		b.fs.due = true
		b.mu.Unlock()
		b.kick()
	})
}

// fleetLua writes changed lease holders and this proxy's client records, renews the client
// hash and reports the proxy's clients an operator asked to end (taken out of the kill set).
//
//	KEYS 1 holders, 2 info, 3 this proxy's client hash, 4 kill.
//	ARGV 1 client hash TTL ms, 2 n, then n triples (lease id, restamp 0/1, holder JSON),
//	then m, m triples (client id, restamp, holder JSON), then client ids to remove.
//
// A lease no longer held is left alone (its release won). Reply: { kills, clients in the hash }.
const fleetLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function put(hash, id, restamp, js)
  local since = now
  if restamp == '0' then
    local old = redis.call('HGET', hash, id)
    if old then since = string.sub(old, 1, (string.find(old, ' ', 1, true) or 1) - 1) end
  end
  redis.call('HSET', hash, id, since .. ' ' .. js)
end
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then put(KEYS[2], ARGV[i], ARGV[i + 1], ARGV[i + 2]) end
  i = i + 3
end
local m = tonumber(ARGV[i])
i = i + 1
for _ = 1, m do
  put(KEYS[3], ARGV[i], ARGV[i + 1], ARGV[i + 2])
  i = i + 3
end
for k = i, #ARGV, 500 do
  redis.call('HDEL', KEYS[3], unpack(ARGV, k, math.min(k + 499, #ARGV)))
end
local kills = {}
local n = redis.call('HLEN', KEYS[3])
if n > 0 then
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[1]))
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[4])) do
    if redis.call('HEXISTS', KEYS[3], id) == 1 then
      redis.call('SREM', KEYS[4], id)
      kills[#kills + 1] = id
    end
  end
end
return { kills, n }
`

var scriptFleet = redis.NewScript(fleetLua)

// clientKey is one proxy's client records of a bucket.
func clientKey(prefix, bucket, proxy string) string {
	return prefix + ":{" + bucket + "}:c:" + proxy
}

// fleetWanted: the worker has fleet-view work (changes to write, or client records to renew
// and check for kills at a heartbeat).
func (b *bucket) fleetWanted(heartbeat bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	fs := &b.fs
	if fs.clients == nil {
		return false
	}
	return fs.due || heartbeat && (len(fs.clients) > 0 || len(fs.holderDirty) > 0 || len(fs.clientGone) > 0)
}

// syncFleet writes pending holder and client-record changes in one call. A failed call leaves
// them pending (the next heartbeat retries); it does not count toward fallback, which the
// slot calls decide.
func (b *bucket) syncFleet() {
	b.mu.Lock()
	fs := b.fleetLocked()
	fs.due = false
	leases := fs.holderDirty
	fs.holderDirty = map[string]bool{}
	if fs.resync {
		fs.resync = false
		for id := range fs.clients {
			if _, ok := fs.clientDirty[id]; !ok {
				fs.clientDirty[id] = false
			}
		}
	}
	clients := fs.clientDirty
	fs.clientDirty = map[string]bool{}
	gone := fs.clientGone
	fs.clientGone = map[string]struct{}{}
	expect := len(fs.clients)
	args := []any{b.c.cfg.LeaseTTL.Milliseconds(), 0}
	n := 0
	for id, restamp := range leases {
		if l := b.held[id]; l != nil {
			args = append(args, id, boolArg(restamp), b.holderJSON(l.holder))
			n++
		}
	}
	args[1] = n
	mi := len(args)
	args = append(args, 0)
	m := 0
	for id, restamp := range clients {
		if cl := fs.clients[id]; cl != nil {
			args = append(args, id, boolArg(restamp), b.holderJSON(cl.holder))
			m++
		}
	}
	args[mi] = m
	for id := range gone {
		args = append(args, id)
	}
	b.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), b.c.cfg.CallTimeout)
	defer cancel()
	start := time.Now()
	keys := []string{b.keys[keyHolders], b.keys[keyInfo], clientKey(b.c.cfg.Prefix, b.name, b.c.cfg.ProxyID), b.keys[keyKill]}
	v, err := scriptFleet.Run(ctx, b.c.rdb, keys, args...).Result()
	var kills []string
	inHash := int64(-1)
	if err == nil {
		if top, ok := v.([]any); ok && len(top) == 2 {
			ks, _ := top[0].([]any)
			for _, k := range ks {
				if id, ok := k.(string); ok {
					kills = append(kills, id)
				}
			}
			inHash = toInt(top[1])
		} else {
			err = errReply
		}
	}
	if err != nil {
		err = fmt.Errorf("bucket %s: fleet: %w", b.name, err)
	}
	b.c.metrics.RedisCall(b.name, "fleet", time.Since(start), err)

	var killed []func()
	b.mu.Lock()
	if err != nil {
		// Not written (or not known to be): keep it for the next try.
		for id, restamp := range leases {
			if _, ok := b.held[id]; ok {
				fs.holderDirty[id] = fs.holderDirty[id] || restamp
			}
		}
		for id, restamp := range clients {
			if _, ok := fs.clients[id]; ok {
				fs.clientDirty[id] = fs.clientDirty[id] || restamp
			}
		}
		for id := range gone {
			fs.clientGone[id] = struct{}{}
		}
	} else {
		for _, id := range kills {
			if cl := fs.clients[id]; cl != nil && cl.onKill != nil {
				killed = append(killed, cl.onKill)
			}
		}
		// Fewer records than this proxy holds (changes made meanwhile are still pending):
		// the hash expired or Redis lost it; write every record at the next flush.
		if inHash < int64(expect) && len(fs.clients) > 0 {
			fs.resync = true
			b.armFleetFlushLocked()
		}
	}
	b.mu.Unlock()
	for _, f := range killed {
		b.c.safely("kill", f)
	}
}

func boolArg(v bool) string {
	if v {
		return "1"
	}
	return "0"
}
