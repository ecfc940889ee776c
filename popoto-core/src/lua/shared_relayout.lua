-- popoto-rs: moving shared instances between key layouts (Admin::migrate_shared_layout). The
-- paged parts of one instance (its change feed's entries, consumer groups and pending entries,
-- each group's done set and dead letters) are staged under staging keys in the instance's slot,
-- page by page; `commit` then lands the instance in one call: its hashes written and the staged
-- keys renamed into place, or nothing at all. ARGV[1] is the operation:
--   xadd    KEYS stage stream; ARGV n, then per entry: id, field count, fields -> {'ok'}
--   xsetid  KEYS stage stream; ARGV last id, entries added, max deleted id ('' when unknown)
--           -> {'ok'}: the stream's last id (created empty when it has no entry)
--   group   KEYS stage stream; ARGV group, last delivered id, entries read ('' when unknown),
--           consumer count, consumers -> {'ok'}
--   claim   KEYS stage stream; ARGV group, n, then per pending entry: consumer, id, idle ms,
--           deliveries -> {'ok', entries claimed} (an entry whose data is gone is not claimed)
--   zadd    KEYS stage zset; ARGV n, then score, member pairs -> {'ok'}
--   commit  KEYS value, meta, tags, subs, feed meta hashes, then P pairs (key, its staging key),
--           then the model's id set if the layout keeps one; ARGV id, P, P flags (1: staged),
--           then per hash its field count and field, value pairs
--           -> {'ok'}; {'exists', key}: the target holds a key of the instance (nothing
--           written); {'unstaged', key}: a staging key is gone (nothing written).
--   grants  KEYS a tenant's grants hash; ARGV field, value pairs -> {'ok', fields written};
--           {'exists', field}: the hash holds that field with another value (nothing written)
-- Staging keys expire after a day, so a cut run that is never resumed leaves nothing for long;
-- a commit keeps what it renames.
local op = ARGV[1]
local STAGE_TTL = 86400

-- HSET of the n field, value pairs of ARGV from `from`, 1,000 pairs a command (Lua's stack).
local function hset(key, from, n)
  local done = 0
  while done < n do
    local m = math.min(1000, n - done)
    redis.call('HSET', key, unpack(ARGV, from + 2 * done, from + 2 * (done + m) - 1))
    done = done + m
  end
end

local function staged(key)
  redis.call('EXPIRE', key, STAGE_TTL)
  return {'ok'}
end

if op == 'xadd' then
  local stage = KEYS[1]
  local bad = typed(stage, 'stream')
  if bad then return bad end
  local i = 3
  for _ = 1, tonumber(ARGV[2]) do
    local id, n = ARGV[i], tonumber(ARGV[i + 1])
    local fields = {}
    for j = 1, n do fields[j] = ARGV[i + 1 + j] end
    redis.call('XADD', stage, id, unpack(fields))
    i = i + 2 + n
  end
  return staged(stage)
elseif op == 'xsetid' then
  local stage = KEYS[1]
  local bad = typed(stage, 'stream')
  if bad then return bad end
  if redis.call('EXISTS', stage) == 0 then
    redis.call('XGROUP', 'CREATE', stage, '$popoto-relayout', '0', 'MKSTREAM')
    redis.call('XGROUP', 'DESTROY', stage, '$popoto-relayout')
  end
  local args = {'XSETID', stage, ARGV[2]}
  if ARGV[3] ~= '' then
    args[#args + 1] = 'ENTRIESADDED'
    args[#args + 1] = ARGV[3]
  end
  if ARGV[4] ~= '' and ARGV[4] ~= '0-0' then
    args[#args + 1] = 'MAXDELETEDID'
    args[#args + 1] = ARGV[4]
  end
  redis.call(unpack(args))
  return staged(stage)
elseif op == 'group' then
  local stage, group = KEYS[1], ARGV[2]
  local bad = typed(stage, 'stream')
  if bad then return bad end
  local args = {'XGROUP', 'CREATE', stage, group, ARGV[3]}
  if ARGV[4] ~= '' then
    args[#args + 1] = 'ENTRIESREAD'
    args[#args + 1] = ARGV[4]
  end
  redis.call(unpack(args))
  for i = 1, tonumber(ARGV[5]) do
    redis.call('XGROUP', 'CREATECONSUMER', stage, group, ARGV[5 + i])
  end
  return staged(stage)
elseif op == 'claim' then
  local stage, group = KEYS[1], ARGV[2]
  local bad = typed(stage, 'stream')
  if bad then return bad end
  local claimed = 0
  local i = 4
  for _ = 1, tonumber(ARGV[3]) do
    local got = redis.call('XCLAIM', stage, group, ARGV[i], 0, ARGV[i + 1], 'IDLE', ARGV[i + 2],
      'RETRYCOUNT', ARGV[i + 3], 'FORCE', 'JUSTID')
    claimed = claimed + #got
    i = i + 4
  end
  staged(stage)
  return {'ok', claimed}
elseif op == 'zadd' then
  local stage = KEYS[1]
  local bad = typed(stage, 'zset')
  if bad then return bad end
  if tonumber(ARGV[2]) > 0 then
    redis.call('ZADD', stage, unpack(ARGV, 3, 2 + 2 * tonumber(ARGV[2])))
  end
  return staged(stage)
elseif op == 'commit' then
  local id, pairs_n = ARGV[2], tonumber(ARGV[3])
  for k = 1, 5 do
    if redis.call('EXISTS', KEYS[k]) == 1 then return {'exists', KEYS[k]} end
  end
  for p = 1, pairs_n do
    local key, stage = KEYS[5 + 2 * p - 1], KEYS[5 + 2 * p]
    if redis.call('EXISTS', key) == 1 then return {'exists', key} end
    if ARGV[3 + p] == '1' and redis.call('EXISTS', stage) == 0 then return {'unstaged', stage} end
  end
  local i = 4 + pairs_n
  for k = 1, 5 do
    local n = tonumber(ARGV[i])
    hset(KEYS[k], i + 1, n)
    i = i + 1 + 2 * n
  end
  for p = 1, pairs_n do
    if ARGV[3 + p] == '1' then
      local key, stage = KEYS[5 + 2 * p - 1], KEYS[5 + 2 * p]
      redis.call('RENAME', stage, key)
      redis.call('PERSIST', key)
    end
  end
  local ids = KEYS[6 + 2 * pairs_n]
  if ids then redis.call('SADD', ids, id) end
  return {'ok'}
elseif op == 'grants' then
  local key = KEYS[1]
  local bad = typed(key, 'hash')
  if bad then return bad end
  for i = 2, #ARGV, 2 do
    local v = redis.call('HGET', key, ARGV[i])
    if v and v ~= ARGV[i + 1] then return {'exists', ARGV[i]} end
  end
  local n = 0
  for i = 2, #ARGV, 2 do n = n + redis.call('HSETNX', key, ARGV[i], ARGV[i + 1]) end
  return {'ok', n}
end
return redis.error_reply('popoto: unknown relayout operation ' .. tostring(op))
