package coordinator

import (
	"github.com/redis/go-redis/v9"
)

// Every script shares one prelude and one epilogue, so that each atomic
// operation is one EVALSHA:
//
//	KEYS: 1 holders (ZSET lease id -> expiry ms)
//	      2 queue   (ZSET waiter id -> ticket)
//	      3 alive   (ZSET waiter id -> liveness deadline ms)
//	      4 seq     (STRING ticket counter)
//	      5 proxies (ZSET proxy id -> last call ms)
//	      6 meta    (HASH cap, cap_by, cap_at, state, state_by, state_at,
//	                 epoch, grace_until, seen, grants)
//	      7 info    (HASH lease or waiter id -> "<since ms> <holder JSON>")
//	      8 kill    (SET lease ids an operator asked to end)
//	ARGV: 1 proxy id, 2 default cap, 3 lease ms, 4 grace ms, 5 silence gap ms,
//	      6 key TTL ms, 7 meta TTL ms, 8 notify channel prefix, 9 bucket name,
//	      10 claim ms, 11.. script specific (the Lua names the first one A).
//
// All times come from Redis TIME, so proxy clocks never matter. Ids are
// "<proxyId>:<n>"; the proxy id contains no ':' (Config.validate checks it),
// so the owner of a waiter is the text before the last ':'.
//
// A proxy's liveness is its score in PX: the Redis time of its last call for
// the bucket. A queued waiter is granted only while its owner was seen within
// the claim window, and a grant to another proxy (made by the pump, announced
// by Pub/Sub) lives only for the claim window until its owner claims it (its
// next call that names the id renews it to a full lease). So a dead proxy's
// waiters stop catching slots one claim window after its last call, and what
// they caught comes back one claim window later; its leases come back after
// the lease TTL.
//
// A bucket's state (meta "state", set by operators): "" serving, "paused"
// (nothing is granted; new requests queue), "draining" and "disabled" (new
// requests are refused, waiters are not re-queued; leases live on until
// released).
//
// Reply of every script: { header, mine, status, kills } where
//
//	header = { epoch, held, proxies, cap, queued, grace_left_ms, reaped, reasserted, renewed,
//	           state, cap_by, cap_at, state_by, state_at }
//	mine   = flat list of (id, ticket, grant_seq) granted to the calling proxy by the pump
//	status = script specific
//	kills  = the calling proxy's lease ids an operator asked to end (heartbeat only)
const prelude = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local H, Q, QA, SEQ, PX, META, INFO, KILL = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local proxy = ARGV[1]
local L = tonumber(ARGV[3])
local G = tonumber(ARGV[4])
local GAP = tonumber(ARGV[5])
local C = tonumber(ARGV[10])
local A = 11
local reaped, reasserted, renewed = 0, 0, 0
local mine, kills = {}, {}

-- Epoch and grace. A missing epoch means this bucket's data is gone (first
-- use, restart without persistence, failover to an empty replica): live
-- proxies may hold sessions Redis no longer knows, so grants pause for G while
-- they re-assert. A long silence with leases present means nobody could reach
-- Redis (or Redis was stopped): expired scores are not proof of death, so the
-- same pause applies before anything is reaped.
local m = redis.call('HMGET', META, 'epoch', 'cap', 'grace_until', 'seen', 'state')
local epoch = m[1]
local cap = tonumber(m[2])
local grace = tonumber(m[3]) or 0
local state = m[5] or ''
local refusing = state == 'draining' or state == 'disabled'
if not epoch then
  epoch = string.format('%d', now)
  grace = now + G
  redis.call('HSET', META, 'epoch', epoch, 'grace_until', grace)
elseif m[4] and now - tonumber(m[4]) > GAP and redis.call('ZCARD', H) > 0 then
  grace = now + G
  redis.call('HSET', META, 'grace_until', grace)
end
if not cap then
  cap = tonumber(ARGV[2])
  redis.call('HSET', META, 'cap', cap, 'cap_by', proxy, 'cap_at', now)
end
redis.call('HSET', META, 'seen', now)
if redis.call('EXISTS', SEQ) == 0 then
  -- Seeded from the clock so tickets of a new epoch sort after every ticket
  -- a proxy re-asserts from the lost one.
  redis.call('SET', SEQ, string.format('%d', now * 1000))
end
redis.call('ZADD', PX, now, proxy)
redis.call('ZREMRANGEBYSCORE', PX, '-inf', now - L)

local function owner(id)
  return string.match(id, '^(.*):[^:]*$')
end

local function zrem_all(key, ids)
  for i = 1, #ids, 500 do
    redis.call('ZREM', key, unpack(ids, i, math.min(i + 499, #ids)))
  end
end

local function hdel_all(key, ids)
  for i = 1, #ids, 500 do
    redis.call('HDEL', key, unpack(ids, i, math.min(i + 499, #ids)))
  end
end

-- set_info records who holds or waits for id; since is kept from an earlier
-- record unless restamp (a grant restamps it).
local function set_info(id, holder, restamp)
  local old = redis.call('HGET', INFO, id)
  if holder == '' then
    if not old or not restamp then return end
    holder = string.sub(old, (string.find(old, ' ', 1, true) or #old) + 1)
  end
  local since = now
  if old and not restamp then
    since = string.sub(old, 1, (string.find(old, ' ', 1, true) or 1) - 1)
  end
  redis.call('HSET', INFO, id, since .. ' ' .. holder)
end

-- fresh: the owner of id called within the claim window.
local function fresh(id)
  local seen = redis.call('ZSCORE', PX, owner(id))
  return seen ~= false and now - tonumber(seen) <= C
end

-- grant hands a slot to a waiter. The caller's own waiters get a full lease
-- (the caller is alive: it is calling); another proxy's get the claim window.
local function grant(id, ticket)
  local g = redis.call('HINCRBY', META, 'grants', 1)
  set_info(id, '', true)
  if owner(id) == proxy then
    redis.call('ZADD', H, now + L, id)
    mine[#mine + 1] = id
    mine[#mine + 1] = ticket
    mine[#mine + 1] = g
  else
    redis.call('ZADD', H, now + C, id)
    redis.call('PUBLISH', ARGV[8] .. owner(id), ARGV[9] .. '\n' .. id .. '\n' .. ticket .. '\n' .. g)
  end
  return g
end

-- pump reaps expired leases and vanished waiters, then hands free slots to
-- the head of the queue, in ticket order, skipping (dropping) waiters whose
-- owner has not called within the claim window: a live owner re-queues them
-- with their old tickets at its next heartbeat. It does nothing during grace.
local function pump()
  if now < grace then return end
  local exp = redis.call('ZRANGEBYSCORE', H, '-inf', now)
  if #exp > 0 then
    zrem_all(H, exp)
    hdel_all(INFO, exp)
    reaped = #exp
  end
  local dead = redis.call('ZRANGEBYSCORE', QA, '-inf', now)
  if #dead > 0 then
    zrem_all(Q, dead)
    zrem_all(QA, dead)
    hdel_all(INFO, dead)
  end
  if state ~= '' then return end
  local free = cap - redis.call('ZCARD', H)
  while free > 0 do
    local head = redis.call('ZRANGE', Q, 0, 0, 'WITHSCORES')
    if #head == 0 then break end
    redis.call('ZREM', Q, head[1])
    redis.call('ZREM', QA, head[1])
    if fresh(head[1]) then
      grant(head[1], head[2])
      free = free - 1
    else
      redis.call('HDEL', INFO, head[1])
    end
  end
end

local function finish(status)
  local ttl = tonumber(ARGV[6])
  redis.call('PEXPIRE', H, ttl)
  redis.call('PEXPIRE', Q, ttl)
  redis.call('PEXPIRE', QA, ttl)
  redis.call('PEXPIRE', SEQ, ttl)
  redis.call('PEXPIRE', PX, ttl)
  redis.call('PEXPIRE', INFO, ttl)
  redis.call('PEXPIRE', META, tonumber(ARGV[7]))
  local left = 0
  if grace > now then left = grace - now end
  local who = redis.call('HMGET', META, 'cap_by', 'cap_at', 'state_by', 'state_at')
  return { { epoch, redis.call('ZCARD', H), redis.call('ZCARD', PX), cap,
             redis.call('ZCARD', Q), left, reaped, reasserted, renewed,
             state, who[1] or '', who[2] or '0', who[3] or '', who[4] or '0' }, mine, status, kills }
end
`

// acquireLua admits or enqueues a batch of requests, in order.
//
//	ARGV A max queue length, A+1 waiter TTL ms, then triples (id, ms left
//	until the caller's deadline, holder JSON).
//
// status: per request, (code, ticket, grant_seq) with code 1 granted,
// 2 queued, 3 refused (queue full), 4 refused (the bucket is draining or
// disabled). Re-sending an id (a retry after a timeout that did run) reports
// its current state instead of counting it twice.
const acquireLua = prelude + `
pump()
local maxq = tonumber(ARGV[A])
local W = tonumber(ARGV[A + 1])
local status = {}
for i = A + 2, #ARGV, 3 do
  local id = ARGV[i]
  local left = tonumber(ARGV[i + 1])
  local holder = ARGV[i + 2]
  local code, ticket, g = 0, 0, 0
  local qs = redis.call('ZSCORE', Q, id)
  if redis.call('ZSCORE', H, id) then
    code = 1
    redis.call('ZADD', H, 'XX', now + L, id) -- claimed
  elseif qs then
    code, ticket = 2, qs
  elseif refusing then
    code = 4
  elseif now >= grace and state == '' and redis.call('ZCARD', Q) == 0 and redis.call('ZCARD', H) < cap then
    code = 1
    redis.call('ZADD', H, now + L, id)
    g = redis.call('HINCRBY', META, 'grants', 1)
    set_info(id, holder, true)
  elseif redis.call('ZCARD', Q) >= maxq then
    code = 3
  else
    code = 2
    ticket = redis.call('INCR', SEQ)
    redis.call('ZADD', Q, ticket, id)
    redis.call('ZADD', QA, now + math.min(W, left), id)
    set_info(id, holder, true)
  end
  status[#status + 1] = code
  status[#status + 1] = ticket
  status[#status + 1] = g
end
return finish(status)
`

// releaseLua drops ids wherever they are: a held lease (release, or a cancel
// that lost the race with a grant: the slot goes to the next waiter) or a
// queued waiter (cancel). Idempotent; unknown ids are ignored.
//
//	ARGV A.. ids. status: { number of leases removed }
const releaseLua = prelude + `
local ids = {}
for i = A, #ARGV do ids[#ids + 1] = ARGV[i] end
local removed = 0
for i = 1, #ids do
  removed = removed + redis.call('ZREM', H, ids[i])
end
if #ids > 0 then
  zrem_all(Q, ids)
  zrem_all(QA, ids)
  hdel_all(INFO, ids)
end
pump()
return finish({ removed })
`

// heartbeatLua renews (upserts) every lease this proxy holds in the bucket,
// keeps its waiters alive and reports which of them were granted (the poll
// behind the Pub/Sub hint). A held id Redis does not know is added back: the
// session really is open, so Redis must count it (reconciliation after data
// loss or an outage); a waiter Redis lost is re-queued with its old ticket.
// A waiter found granted is claimed: its lease gets the full TTL. A lease an
// operator asked to end is reported in kills (once). Waiters of a draining or
// disabled bucket are not re-queued: their proxy refuses them.
//
//	ARGV A waiter TTL ms, A+1 number of held ids, then pairs (held id, holder
//	JSON or "" when unchanged), then triples (waiter id, ticket, ms left until
//	its deadline).
//
// status: ids of this proxy's waiters found granted, as (id, ticket, 0).
const heartbeatLua = prelude + `
local W = tonumber(ARGV[A])
local nheld = tonumber(ARGV[A + 1])
local status = {}
local first = A + 2 + 2 * nheld
for i = A + 2, first - 1, 2 do
  local id = ARGV[i]
  reasserted = reasserted + redis.call('ZADD', H, now + L, id)
  renewed = renewed + 1
  redis.call('ZREM', Q, id)
  redis.call('ZREM', QA, id)
  set_info(id, ARGV[i + 1], false)
  if redis.call('SREM', KILL, id) == 1 then kills[#kills + 1] = id end
end
for i = first, #ARGV, 3 do
  local id, ticket, left = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if redis.call('ZSCORE', H, id) then
    redis.call('ZADD', H, 'XX', now + L, id) -- claimed
    status[#status + 1] = id
    status[#status + 1] = ticket
    status[#status + 1] = 0
  elseif refusing then
    redis.call('ZREM', Q, id)
    redis.call('ZREM', QA, id)
    redis.call('HDEL', INFO, id)
  else
    if not redis.call('ZSCORE', Q, id) then
      redis.call('ZADD', Q, ticket, id)
      if tonumber(redis.call('GET', SEQ)) < tonumber(ticket) then
        redis.call('SET', SEQ, ticket)
      end
    end
    redis.call('ZADD', QA, now + math.min(W, left), id)
  end
end
pump()
return finish(status)
`

// setCapLua stores the bucket's cap for the whole fleet and pumps, so a
// raised cap grants at once. A lowered cap removes no lease: grants stop until
// the count drains below it. The last writer wins; who wrote it and when is
// kept for the fleet view.
//
//	ARGV A cap, A+1 who set it. status: {}
const setCapLua = prelude + `
cap = tonumber(ARGV[A])
redis.call('HSET', META, 'cap', cap, 'cap_by', ARGV[A + 1], 'cap_at', now)
pump()
return finish({})
`

// registerLua records one proxy in the fleet's proxy table (one HASH for the
// fleet: field = proxy id, value = its JSON with "seen" set from Redis TIME)
// and forgets proxies not seen for ARGV 3 ms. ARGV 2 "" removes the proxy.
//
//	KEYS 1 proxies hash. ARGV 1 proxy id, 2 JSON object, 3 forget after ms,
//	4 key TTL ms.
const registerLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
local v = cjson.decode(ARGV[2])
v['seen'] = now
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(v))
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, o = pcall(cjson.decode, all[i + 1])
  if not ok or type(o) ~= 'table' or tonumber(o['seen'] or 0) < now - tonumber(ARGV[3]) then
    redis.call('HDEL', KEYS[1], all[i])
  end
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return now
`

var (
	scriptAcquire   = redis.NewScript(acquireLua)
	scriptRelease   = redis.NewScript(releaseLua)
	scriptHeartbeat = redis.NewScript(heartbeatLua)
	scriptSetCap    = redis.NewScript(setCapLua)
	scriptRegister  = redis.NewScript(registerLua)
)
