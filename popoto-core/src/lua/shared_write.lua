-- popoto-rs: one write of a shared instance with its grant check, merge and change event,
-- atomically (the feed prelude, feed_common.lua, is prepended).
-- KEYS: 1 value hash, 2 meta hash, 3 tags hash, 4 subscribers hash, 5 feed stream, 6 feed meta
--       hash, 7 the model's ids set where the layout keeps one (popoto's; absent on a cluster,
--       where it would be in another slot).
-- ARGV: 1 mode (share | set | patch | cas), 2 model, 3 id, 4 writing tenant ('' for the host),
--       5 origin (replica id), 6 merge (share: lww | crdt | custom), 7 expected version (cas),
--       8 n, then n times: field, bytes, tag ('' when not merged as an LWW map).
-- Reply: {'ok', version, entry id, fields applied}
--      | {'stale', version}: an LWW-map write none of whose fields won (nothing written)
--      | {'missing'} | {'exists'} | {'denied', 'r' | 'none'} | {'changed', version}
--      | {'merge', merge} | {'wrongtype', key, type} | {'corrupt', reason} | {'badtag', field}
local value, meta, tags, subs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local stream, fmeta, ids = KEYS[5], KEYS[6], KEYS[7]
local mode, model, id, who, origin = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local n = tonumber(ARGV[8])

-- (millis, counter, replica) of a tag, or nil if it is not one.
local function parse_tag(t)
  local ms, c, r = string.match(t, '^(%d+):(%d+):(.+)$')
  if not ms or #ms > 16 or #c > 10 then return nil end
  ms, c = tonumber(ms), tonumber(c)
  if ms > 9007199254740991 or c > 4294967295 then return nil end
  return ms, c, r
end

-- Byte-wise a < b (Lua's own < follows the server's locale).
local function bytes_lt(a, b)
  local m = math.min(#a, #b)
  for j = 1, m do
    local x, y = string.byte(a, j), string.byte(b, j)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Whether (t1, v1) replaces (t2, v2): the greater tag, then the greater bytes.
local function wins(t1, v1, t2, v2)
  local m1, c1, r1 = parse_tag(t1)
  local m2, c2, r2 = parse_tag(t2)
  if m1 ~= m2 then return m1 > m2 end
  if c1 ~= c2 then return c1 > c2 end
  if r1 ~= r2 then return bytes_lt(r2, r1) end
  return bytes_lt(v2, v1)
end

-- Checks: nothing is written before all pass, and every key's type is checked first.
local kinds = {{value, 'hash'}, {meta, 'hash'}, {tags, 'hash'}, {subs, 'hash'}}
if ids then kinds[#kinds + 1] = {ids, 'set'} end
for _, kt in ipairs(kinds) do
  local bad = typed(kt[1], kt[2])
  if bad then return bad end
end
local bad = feed_types(stream, fmeta)
if bad then return bad end

local merge, version
if mode == 'share' then
  if redis.call('EXISTS', value, meta, tags, subs) > 0 then return {'exists'} end
  merge, version = ARGV[6], 0
  if merge ~= 'lww' and merge ~= 'crdt' and merge ~= 'custom' then
    return {'corrupt', 'unknown merge strategy'}
  end
else
  local m = redis.call('HMGET', meta, 'model', 'id', 'merge', 'version')
  if not m[1] then
    -- A tenant cannot tell a missing instance from one it is not subscribed to.
    if who ~= '' then return {'denied', 'none'} end
    return {'missing'}
  end
  if m[1] ~= model or m[2] ~= id then return {'corrupt', 'the meta hash names another instance'} end
  merge, version = m[3], tonumber(m[4])
  if version == nil or (merge ~= 'lww' and merge ~= 'crdt' and merge ~= 'custom') then
    return {'corrupt', 'malformed meta hash'}
  end
  if who ~= '' then
    local g = redis.call('HGET', subs, who)
    if g ~= 'w' then
      if g == 'r' then return {'denied', 'r'} end
      return {'denied', 'none'}
    end
  end
  if mode == 'patch' and merge == 'custom' then return {'merge', merge} end
  if mode == 'cas' then
    if merge == 'crdt' then return {'merge', merge} end
    if version ~= tonumber(ARGV[7]) then return {'changed', version} end
  end
end

-- The fields that win: all of them, or for an LWW map those whose tag beats the stored one.
local applied = {}
for j = 0, n - 1 do
  local f, v, t = ARGV[9 + 3 * j], ARGV[10 + 3 * j], ARGV[11 + 3 * j]
  if merge == 'crdt' then
    if not parse_tag(t) then return {'badtag', f} end
    local old = redis.call('HGET', tags, f)
    if old and not parse_tag(old) then return {'corrupt', 'stored tag of field ' .. f} end
    if not old or wins(t, v, old, redis.call('HGET', value, f) or '') then
      applied[#applied + 1] = {f, v, t}
    end
  else
    applied[#applied + 1] = {f, v, t}
  end
end
if #applied == 0 and mode ~= 'share' then return {'stale', version} end

-- Writes.
version = version + 1
if mode == 'share' then
  redis.call('HSET', meta, 'model', model, 'id', id, 'merge', merge, 'version', version)
  if ids then redis.call('SADD', ids, id) end
else
  redis.call('HSET', meta, 'version', version)
end
local full = (mode ~= 'patch' and merge ~= 'crdt') or mode == 'share'
local ev = {'op', mode, 'model', model, 'id', id, 'scope', 'shared', 'version', tostring(version),
  'origin', origin, 'by', (who == '' and 'host' or 'tenant'), 'full', (full and '1' or '0')}
local hv, ht = {}, {}
for _, a in ipairs(applied) do
  hv[#hv + 1] = a[1]; hv[#hv + 1] = a[2]
  ev[#ev + 1] = 'f:' .. a[1]; ev[#ev + 1] = a[2]
  if merge == 'crdt' then
    ht[#ht + 1] = a[1]; ht[#ht + 1] = a[3]
    ev[#ev + 1] = 't:' .. a[1]; ev[#ev + 1] = a[3]
  end
end
if #hv > 0 then redis.call('HSET', value, unpack(hv)) end
if #ht > 0 then redis.call('HSET', tags, unpack(ht)) end
local entry = feed_append(stream, fmeta, ev)
return {'ok', version, entry, #applied}
