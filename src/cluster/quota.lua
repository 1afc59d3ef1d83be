-- The WorkOS quota of every replica together, decided atomically (GCRA, as the local quota does).
-- Checks, in order: the caller's own quota, its fair share (enforced only while another caller
-- waits), the delete limit, the general limit; commits every one only when all grant, so a
-- refusal spends nothing. Times are Redis's own clock, in microseconds, so replicas' clocks do not
-- matter.
--
-- KEYS: 1 general, 2 deletes, 3 caller's own, 4 caller's share (theoretical arrival times),
--       5 the waiting callers (a sorted set scored by until when they count as waiting)
-- ARGV: 1 caller, 2 requests per minute, 3 burst, 4 delete (1 or 0), 5 deletes per minute,
--       6 the caller's own requests per minute (0: none)
-- Returns {0} when granted, or {1, scope, microseconds to wait}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local MINUTE = 60000000

local function due(key)
  local stored = redis.call('GET', key)
  if stored then
    return math.max(tonumber(stored), now)
  end
  return now
end

-- The next theoretical arrival time, or nil and how long to wait.
local function gcra(key, interval, tolerance)
  local at = due(key)
  if at > now + tolerance then
    return nil, at - now - tolerance
  end
  return at + interval, 0
end

local function mark_waiting(wait)
  local until_ = now + math.min(math.max(wait + 50000, 100000), 1000000)
  redis.call('ZADD', KEYS[5], until_, ARGV[1])
  redis.call('PEXPIRE', KEYS[5], 2000)
end

redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
local contenders = 1 + redis.call('ZCOUNT', KEYS[5], '(' .. now, '+inf')
if redis.call('ZSCORE', KEYS[5], ARGV[1]) then
  contenders = contenders - 1
end
local rate = math.max(tonumber(ARGV[2]), 1)
local burst = math.max(tonumber(ARGV[3]), 1)

-- The caller's own quota: `limit` a minute, a tenth of it at once.
local own_next
local own_limit = tonumber(ARGV[6])
if own_limit > 0 then
  local interval = MINUTE / own_limit
  local tolerance = interval * (math.max(math.ceil(own_limit / 10), 1) - 1)
  local next_, wait = gcra(KEYS[3], interval, tolerance)
  if not next_ then
    return {1, 'caller', math.floor(wait)}
  end
  own_next = next_
end

-- The fair share: while others wait, at most one request ahead of the caller's share of the
-- rate; alone, a whole burst, and no more debt than that.
local interval = MINUTE * contenders / rate
local tolerance = interval * burst
if contenders > 1 then
  tolerance = interval
end
local share_at = due(KEYS[4])
local share_next
if share_at > now + tolerance then
  if contenders > 1 then
    mark_waiting(share_at - now - tolerance)
    return {1, 'fair_share', math.floor(share_at - now - tolerance)}
  end
  share_next = now + tolerance + interval
else
  share_next = math.min(share_at + interval, now + tolerance + interval)
end

local deletes_next
if ARGV[4] == '1' then
  local limit = math.max(tonumber(ARGV[5]), 1)
  local d_interval = MINUTE / limit
  local d_tolerance = d_interval * (math.max(math.ceil(limit / 10), 1) - 1)
  local next_, wait = gcra(KEYS[2], d_interval, d_tolerance)
  if not next_ then
    return {1, 'workos_deletes', math.floor(wait)}
  end
  deletes_next = next_
end

local g_interval = MINUTE / rate
local general_next, general_wait = gcra(KEYS[1], g_interval, g_interval * (burst - 1))
if not general_next then
  mark_waiting(general_wait)
  return {1, 'workos', math.floor(general_wait)}
end

local function store(key, value)
  local ttl = math.floor((value - now) / 1000) + 1000
  redis.call('SET', key, string.format('%d', math.floor(value)), 'PX', ttl)
end
store(KEYS[1], general_next)
if deletes_next then
  store(KEYS[2], deletes_next)
end
if own_next then
  store(KEYS[3], own_next)
end
store(KEYS[4], share_next)
return {0}
