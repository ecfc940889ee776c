-- popoto-rs: apply one instance write atomically (the feed prelude, feed_common.lua, is
-- prepended: a FEED op appends the write's change event in the same call).
-- KEYS: every key the write touches. ARGV[1]: number of check ops; then the ops.
-- Checks run first and write nothing; a failed check returns {code, ...} before any write, so an
-- instance and its index entries are written all or nothing. Key operands are indices into KEYS.
-- Reply: the first write's reply when it is an integer, else 0 (a bare integer: a table reply
-- costs the server more than most writes), or {'<failed check>', ...}.
-- A batch of plans in one call is described at the end of the file.

-- Keys whose type check passed in this call, with the type: later plans of a batch skip the
-- TYPE call (a checked key keeps its type until a DEL or RENAME, which forget it).
local checked = {}

-- The plan being applied: its arguments are argv[i .. last] and its key operands are indices
-- into KEYS counted from kbase (a batch holds several plans in one ARGV and KEYS).
local argv, kbase, i, last = ARGV, 0, 1, #ARGV
local function k() local x = KEYS[kbase + tonumber(argv[i])]; i = i + 1; return x end
local function a() local x = argv[i]; i = i + 1; return x end

local function apply()
local nchecks = tonumber(a())

for _ = 1, nchecks do
  local op = a()
  if op == 'A' then -- key must be absent
    local key = k()
    if redis.call('EXISTS', key) == 1 then return {'exists', key} end
  elseif op == 'P' then -- key must be present
    local key = k()
    if redis.call('EXISTS', key) == 0 then return {'missing', key} end
  elseif op == 'U' then -- set may hold no member other than the given ones
    local key = k(); local tag = a(); local m1 = a(); local m2 = a()
    local refused = unique_refusal(key, tag, m1, m2, 0)
    if refused then return refused end
  elseif op == 'W' then -- as 'U', counting only members whose key segment at the given
    -- position is the first given member's (a unique value within one tenant)
    local key = k(); local tag = a(); local m1 = a(); local m2 = a(); local p = tonumber(a())
    local refused = unique_refusal(key, tag, m1, m2, p)
    if refused then return refused end
  elseif op == 'G' then -- hash field must hold the given bytes
    local key = k(); local f = a(); local v = a()
    if redis.call('HGET', key, f) ~= v then return {'changed', key} end
  elseif op == 'N' then -- hash field must be absent
    local key = k(); local f = a()
    if redis.call('HEXISTS', key, f) == 1 then return {'changed', key} end
  elseif op == 'E' then -- hash absent, or its field holding the given bytes
    local key = k(); local f = a(); local v = a()
    if redis.call('EXISTS', key) == 1 and redis.call('HGET', key, f) ~= v then
      return {'changed', key}
    end
  elseif op == 'S' then -- key absent, or a hash holding exactly the given fields and no other
    local key = k(); local n = tonumber(a())
    local t = redis.call('TYPE', key).ok
    if t ~= 'none' and t ~= 'hash' then return {'wrongtype', key, t} end
    local same = t == 'none' or redis.call('HLEN', key) == n
    for _ = 1, n do
      local f = a(); local v = a()
      if same and t == 'hash' and redis.call('HGET', key, f) ~= v then same = false end
    end
    if not same then return {'exists', key} end
    if t == 'hash' then checked[key] = 'hash' end
  elseif op == 'R' then -- the version field must hold the given number (no field, no hash: 0);
    -- a failure replies the stored version, or -1 when it is not an unsigned int
    local key = k(); local f = a(); local want = a()
    local raw = redis.pcall('HGET', key, f)
    if type(raw) == 'table' and raw.err then return {'wrongtype', key, redis.call('TYPE', key).ok} end
    local found = '0'
    if raw then
      local ok, n = pcall(cmsgpack.unpack, raw)
      if ok and type(n) == 'number' and n >= 0 and n == math.floor(n) then
        found = string.format('%.0f', n)
      else
        found = '-1'
      end
    end
    if found ~= want then return {'conflict', key, found} end
  elseif op == 'T' then -- key must be absent or of the given type
    local key = k(); local t = a()
    if checked[key] ~= t then
      local bad = typed(key, t)
      if bad then return bad end
      checked[key] = t
    end
  else
    return redis.error_reply('popoto: unknown check ' .. tostring(op))
  end
end

local first = nil
local function note(r) if first == nil then first = r end end
local n = last
while i <= n do
  local op = a()
  if op == 'HSET' then
    local key = k(); local cnt = tonumber(a())
    note(redis.call('HSET', key, unpack(argv, i, i + 2 * cnt - 1)))
    i = i + 2 * cnt
  elseif op == 'SADD' then local key = k(); note(redis.call('SADD', key, a()))
  elseif op == 'SREM' then local key = k(); note(redis.call('SREM', key, a()))
  elseif op == 'ZADD' then local key = k(); local s = a(); note(redis.call('ZADD', key, s, a()))
  elseif op == 'ZREM' then local key = k(); note(redis.call('ZREM', key, a()))
  elseif op == 'DEL' then local key = k(); checked[key] = nil; note(redis.call('DEL', key))
  elseif op == 'HSETNX' then local key = k(); local f = a(); note(redis.call('HSETNX', key, f, a()))
  elseif op == 'HDEL' then local key = k(); note(redis.call('HDEL', key, a()))
  elseif op == 'HMOVE' then -- move one hash entry (key, field) to (key, field), keeping its bytes
    local src = k(); local f1 = a(); local dst = k(); local f2 = a()
    local v = redis.call('HGET', src, f1)
    if v then redis.call('HDEL', src, f1); redis.call('HSET', dst, f2, v) end
    note(v and 1 or 0)
  elseif op == 'RENAME' then
    local src = k(); local dst = k(); checked[src] = nil; checked[dst] = nil
    note(redis.call('RENAME', src, dst))
  elseif op == 'HMOVENX' then -- move a hash entry unless the destination holds one: 1 moved,
    -- 2 destination kept (the source entry is dropped), 0 no source entry
    local src = k(); local f1 = a(); local dst = k(); local f2 = a()
    local v = redis.call('HGET', src, f1)
    if v then
      local added = redis.call('HSETNX', dst, f2, v)
      redis.call('HDEL', src, f1)
      note(added == 1 and 1 or 2)
    else note(0) end
  elseif op == 'ZMOVENX' then -- move a zset member with its score unless the destination
    -- holds it: 1 moved, 2 destination kept (the source member is dropped), 0 no source member
    local src = k(); local dst = k(); local m = a()
    local s = redis.call('ZSCORE', src, m)
    if s then
      local added = redis.call('ZADD', dst, 'NX', s, m)
      redis.call('ZREM', src, m)
      note(added == 1 and 1 or 2)
    else note(0) end
  elseif op == 'EXPIRE' then -- expire the hash at the given time and record it in the expiry set
    local key = k(); local z = k(); local at = expiry_at(a())
    redis.call('ZADD', z, at, key)
    note(redis.call('PEXPIREAT', key, at))
  elseif op == 'ZRENAME' then -- move a member's score to another member (and zset)
    local src = k(); local dst = k(); local m1 = a(); local m2 = a()
    local s = redis.call('ZSCORE', src, m1)
    if s then
      redis.call('ZREM', src, m1)
      redis.call('ZADD', dst, s, m2)
    end
    note(s and 1 or 0)
  elseif op == 'FEED' then -- append a change event (its fields, then the stream's counter)
    local stream = k(); local meta = k(); local cnt = tonumber(a())
    local ev = {unpack(argv, i, i + cnt - 1)}
    i = i + cnt
    ev[#ev + 1] = 'version'
    ev[#ev + 1] = tostring(redis.call('HINCRBY', meta, 'seq', 1))
    note(feed_append(stream, meta, ev))
  else
    return redis.error_reply('popoto: unknown op ' .. tostring(op))
  end
end
return type(first) == 'number' and first or 0
end

-- One plan: KEYS and ARGV as above. A batch of plans: ARGV[1] is '*', then for every plan the
-- number of its keys, the number of its arguments and its arguments; KEYS holds every plan's
-- keys in order. Each plan is applied or refused on its own, as if called alone (a plan that
-- raises an error gets the error as its reply and the next plans still run); the reply is the
-- array of the plans' replies.
-- No plan is left half written: a plan's checks type-check every key it writes ('T', 'S')
-- before its first write, and once a script has written, Redis refuses none of its later
-- writes for memory; so no write of a plan that passed its checks can fail, and a refused
-- plan wrote nothing (tests/group_commit.rs, a refused plan midway through a batch).
if ARGV[1] ~= '*' then return apply() end
local out, kp, ap, n = {}, 0, 2, #ARGV
while ap <= n do
  local nk, na = tonumber(ARGV[ap]), tonumber(ARGV[ap + 1])
  kbase, i, last = kp, ap + 2, ap + 1 + na
  local ok, reply = pcall(apply)
  if not ok then
    if type(reply) ~= 'table' or reply.err == nil then
      reply = redis.error_reply(tostring(reply))
    end
  end
  out[#out + 1] = reply
  kp, ap = kp + nk, ap + 2 + na
end
return out
