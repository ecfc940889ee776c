-- popoto-rs: consumer groups of a change feed (the feed prelude, feed_common.lua, is prepended).
-- ARGV[1] is the operation:
--   create   KEYS stream, feed meta; ARGV group, start id -> {'ok', created 1 | 0}
--            Registers the group in the meta hash (its creation time) and, if the stream had
--            no group, sets a trim floor of 0-0: appends stop trimming until a trim has
--            computed what the groups need.
--   ack      KEYS stream, done set; ARGV group, entry id -> {'ok', acknowledged}
--            Marks the entry done and acknowledges it together: a consumer that finds an
--            entry done skips it.
--   dead     KEYS stream, done set, dead letters; ARGV group, entry id, reason, deliveries
--            -> {'ok'}: copies the entry (if still there) to the dead letters, marks it done
--            and acknowledges it.
--   beat     KEYS feed meta; ARGV group -> {'ok'}: a consumer of the group polled now (what
--            tells a live group from a dead one when its reads find nothing).
--   destroy  KEYS stream, feed meta, done set, dead letters; ARGV group -> {'ok', destroyed}
-- Any operation may reply {'wrongtype', key, type}: nothing written.
local op, group = ARGV[1], ARGV[2]

local function id_ms(id)
  return tonumber(string.match(id, '^(%d+)%-%d+$')) or 0
end

if op == 'create' then
  local stream, fmeta = KEYS[1], KEYS[2]
  local bad = feed_types(stream, fmeta)
  if bad then return bad end
  local r = redis.pcall('XGROUP', 'CREATE', stream, group, ARGV[3], 'MKSTREAM')
  local created = 1
  if type(r) == 'table' and r.err then
    if string.sub(r.err, 1, 9) ~= 'BUSYGROUP' then return r end
    created = 0
  end
  local now = now_ms()
  redis.call('HSETNX', fmeta, 'group:' .. group, now)
  if redis.call('HEXISTS', fmeta, 'floor') == 0 then
    redis.call('HSET', fmeta, 'floor', '0-0', 'floor_at', now)
  end
  return {'ok', created}
elseif op == 'ack' then
  local stream, done = KEYS[1], KEYS[2]
  local bad = typed(stream, 'stream') or typed(done, 'zset')
  if bad then return bad end
  local id = ARGV[3]
  redis.call('ZADD', done, id_ms(id), id)
  return {'ok', redis.call('XACK', stream, group, id)}
elseif op == 'dead' then
  local stream, done, dead = KEYS[1], KEYS[2], KEYS[3]
  local bad = typed(stream, 'stream') or typed(done, 'zset') or typed(dead, 'stream')
  if bad then return bad end
  local id = ARGV[3]
  local e = redis.call('XRANGE', stream, id, id)
  local fields = {'source', id, 'reason', ARGV[4], 'deliveries', ARGV[5]}
  if e[1] then
    for _, v in ipairs(e[1][2]) do fields[#fields + 1] = v end
  end
  redis.call('XADD', dead, 'MAXLEN', '~', FEED_MAXLEN, '*', unpack(fields))
  redis.call('ZADD', done, id_ms(id), id)
  redis.call('XACK', stream, group, id)
  return {'ok'}
elseif op == 'beat' then
  local fmeta = KEYS[1]
  local bad = typed(fmeta, 'hash')
  if bad then return bad end
  redis.call('HSET', fmeta, 'seen:' .. group, now_ms())
  return {'ok'}
elseif op == 'destroy' then
  local stream, fmeta, done, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  local bad = feed_types(stream, fmeta)
  if bad then return bad end
  local destroyed = 0
  if redis.call('EXISTS', stream) == 1 then
    destroyed = redis.call('XGROUP', 'DESTROY', stream, group)
  end
  redis.call('HDEL', fmeta, 'group:' .. group, 'seen:' .. group)
  redis.call('DEL', done, dead)
  local left = false
  for _, f in ipairs(redis.call('HKEYS', fmeta)) do
    if string.sub(f, 1, 6) == 'group:' then left = true end
  end
  if not left then redis.call('HDEL', fmeta, 'floor', 'floor_at') end
  return {'ok', destroyed}
end
return redis.error_reply('popoto: unknown feed group operation ' .. tostring(op))
