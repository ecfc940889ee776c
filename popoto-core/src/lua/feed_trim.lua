-- popoto-rs: trims a change feed that has consumer groups, without dropping what a live group
-- still needs (the feed prelude, feed_common.lua, is prepended).
-- KEYS: 1 stream, 2 feed meta, then per group (in ARGV order) its done set and dead letters.
-- ARGV: 1 n groups, then the group names (every group of the stream must be among them).
-- The retention (meta `maxlen`, `maxage`) says which entries are due; a live group (created,
-- polled or with a consumer active within `stale` ms) needs every entry from its oldest pending one
-- and every entry not yet delivered to it; nothing it needs is trimmed. A dead group holds
-- nothing back: its pending entries that are due are copied to its dead letters (at most 1000
-- per call, and those beyond stay) and acknowledged, so no pending entry is trimmed unseen.
-- The floor reached is stored for the appends (`floor`, `floor_at`), and done sets lose the
-- ids trimmed.
-- Reply: {'ok', entries trimmed, floor, dead-lettered, dead group names...} | {'changed'}
--      | {'wrongtype', key, type}
local stream, fmeta = KEYS[1], KEYS[2]
local bad = feed_types(stream, fmeta)
if bad then return bad end
local n = tonumber(ARGV[1])
local slot = {}
for j = 1, n do
  slot[ARGV[1 + j]] = 2 + 2 * j - 1
  for _, k in ipairs({KEYS[2 + 2 * j - 1], KEYS[2 + 2 * j]}) do
    local bad = typed(k, k == KEYS[2 + 2 * j] and 'stream' or 'zset')
    if bad then return bad end
  end
end
if redis.call('EXISTS', stream) == 0 then return {'ok', 0, '', 0} end

local function parse_id(id)
  local a, b = string.match(id, '^(%d+)%-(%d+)$')
  return tonumber(a), tonumber(b)
end
local function id_lt(x, y)
  local a1, b1 = parse_id(x)
  local a2, b2 = parse_id(y)
  if a1 ~= a2 then return a1 < a2 end
  return b1 < b2
end
-- A flat RESP2 map as a table.
local function map(flat)
  local t = {}
  for j = 1, #flat, 2 do t[flat[j]] = flat[j + 1] end
  return t
end

local now = now_ms()
local cfg = redis.call('HMGET', fmeta, 'maxlen', 'maxage', 'stale')
local maxlen = tonumber(cfg[1]) or FEED_MAXLEN
local stale = tonumber(cfg[3]) or FEED_STALE_MS

-- Due: entries below `cut`.
local cut = nil
local len = redis.call('XLEN', stream)
if len > maxlen then
  local r = redis.call('XRANGE', stream, '-', '+', 'COUNT', len - maxlen + 1)
  cut = r[#r][1]
end
local age = tonumber(cfg[2])
if age then
  local c = string.format('%.0f-0', now - age)
  if cut == nil or id_lt(cut, c) then cut = c end
end

local groups = redis.call('XINFO', 'GROUPS', stream)
local need = nil
local dead, deadlettered = {}, 0
for _, flat in ipairs(groups) do
  local g = map(flat)
  local name = g['name']
  local k = slot[name]
  if not k then return {'changed'} end
  -- Alive: created, polled (a consumer's poll beats, even when it reads nothing: Redis 7.0
  -- does not count an empty read as activity) or active within `stale` ms.
  local beat = math.max(tonumber(redis.call('HGET', fmeta, 'group:' .. name)) or 0,
    tonumber(redis.call('HGET', fmeta, 'seen:' .. name)) or 0)
  local alive = now - beat < stale
  if not alive then
    for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, name)) do
      if (tonumber(map(c)['idle']) or stale) < stale then alive = true end
    end
  end
  -- Everything after the last entry delivered to it, and every entry it holds pending.
  local lms, lseq = parse_id(g['last-delivered-id'])
  local gneed = string.format('%.0f-%.0f', lms, lseq + 1)
  local p = redis.call('XPENDING', stream, name)
  if p[1] > 0 and id_lt(p[2], gneed) then gneed = p[2] end
  if alive then
    if need == nil or id_lt(gneed, need) then need = gneed end
  else
    dead[#dead + 1] = name
    if cut and p[1] > 0 then
      local rows = redis.call('XPENDING', stream, name, '-', '(' .. cut, 1000)
      for _, row in ipairs(rows) do
        local id = row[1]
        local e = redis.call('XRANGE', stream, id, id)
        local fields = {'source', id, 'reason', 'dead consumer group', 'deliveries', tostring(row[4])}
        if e[1] then
          for _, v in ipairs(e[1][2]) do fields[#fields + 1] = v end
        end
        redis.call('XADD', KEYS[k + 1], 'MAXLEN', '~', FEED_MAXLEN, '*', unpack(fields))
        redis.call('XACK', stream, name, id)
        deadlettered = deadlettered + 1
      end
      if #rows == 1000 then
        local left = redis.call('XPENDING', stream, name)
        if left[1] > 0 and (need == nil or id_lt(left[2], need)) then need = left[2] end
      end
    end
  end
end

local floor = cut
if floor and need and id_lt(need, floor) then floor = need end
local trimmed = 0
if floor then
  trimmed = redis.call('XTRIM', stream, 'MINID', floor)
  local ms = parse_id(floor)
  for j = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[2 + 2 * j - 1], '-inf', '(' .. string.format('%.0f', ms))
  end
end
if #groups == 0 then
  redis.call('HDEL', fmeta, 'floor', 'floor_at')
else
  redis.call('HSET', fmeta, 'floor', floor or '0-0', 'floor_at', now)
end
local out = {'ok', trimmed, floor or '', deadlettered}
for _, d in ipairs(dead) do out[#out + 1] = d end
return out
