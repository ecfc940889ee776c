-- popoto-rs: grants of shared instances. Two sides: the instance's subscribers hash (tenant ->
-- r | w, what every read and write script checks: the authority) and the tenant's grants hash
-- (instance field -> '<access>:<feed start id>', what a tenant lists). Where the layout keeps
-- both in one slot (popoto's), one call changes both; on a cluster the instance's side is one
-- call and the tenant's another, the grant made on the instance's side first and revoked there
-- first, so a cut between the two never grants more than the instance's side says.
-- ARGV[1] is the operation; KEYS and the other arguments depend on it:
--   subscribe    KEYS meta, subs, stream[, grants]; ARGV model, id, tenant, field, access,
--                the tenant's grant as the caller read it ('' when the grants key is given)
--                -> {'ok', feed start id, version} | {'missing'}
--   grant        KEYS grants; ARGV -, -, tenant, field, '<access>:<start>' -> {'ok'}
--   unsubscribe  KEYS subs[, grants]; ARGV -, -, tenant, field -> {'ok', entries removed}
--   ungrant      KEYS grants; ARGV -, -, tenant, n, fields -> {'ok', entries removed}
--   unshare      KEYS value, meta, tags, subs, stream, feed meta, the done and dead keys of
--                each consumer group, one grants key per tenant (both sides only), then the
--                ids set where the layout keeps one;
--                ARGV model, id, sides ('both' | 'instance'), field, n groups, groups,
--                n tenants, tenants
--                -> {'ok', grants removed, subscribers...} | {'missing'} | {'changed'}
--   fix          KEYS one side's hash; ARGV -, -, field, expected value, new value ('' to
--                remove): the audit's repair, written only if the field still holds what the
--                audit read -> {'ok', 1 | 0}
--   purge        KEYS grants, then one subscribers key per field (a tenant being destroyed,
--                both sides in one slot); ARGV -, -, tenant, n, fields
--                -> {'ok', subscriber entries removed} | {'changed'}
-- Every reply may also be {'wrongtype', key, type} | {'corrupt', reason}: nothing written.
local op = ARGV[1]

-- The model and id of a meta hash match, or why not.
local function check_meta(meta, model, id)
  local bad = typed(meta, 'hash')
  if bad then return bad end
  local m = redis.call('HMGET', meta, 'model', 'id')
  if not m[1] then return {'missing'} end
  if m[1] ~= model or m[2] ~= id then return {'corrupt', 'the meta hash names another instance'} end
  return nil
end

if op == 'subscribe' then
  local meta, subs, stream, grants = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  local model, id, tenant, field, access = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  local bad = check_meta(meta, model, id) or typed(subs, 'hash') or typed(stream, 'stream')
    or (grants and typed(grants, 'hash'))
  if bad then return bad end
  if access ~= 'r' and access ~= 'w' then return {'corrupt', 'access must be r or w'} end
  -- A change of access keeps the feed position of the subscription it changes: one the
  -- instance's side still holds (a tenant's grant left by a cut revoke starts anew).
  local old = (grants and redis.call('HGET', grants, field)) or ARGV[7]
  local start = old and string.match(old, '^[rw]:(%d+%-%d+)$')
  local held = redis.call('HGET', subs, tenant)
  if held ~= 'r' and held ~= 'w' then start = nil end
  if not start then
    local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
    start = (last[1] and last[1][1]) or '0-0'
  end
  redis.call('HSET', subs, tenant, access)
  if grants then redis.call('HSET', grants, field, access .. ':' .. start) end
  return {'ok', start, redis.call('HGET', meta, 'version')}
elseif op == 'grant' then
  local grants, field, value = KEYS[1], ARGV[5], ARGV[6]
  local bad = typed(grants, 'hash')
  if bad then return bad end
  if not string.match(value, '^[rw]:%d+%-%d+$') then return {'corrupt', 'malformed grant'} end
  redis.call('HSET', grants, field, value)
  return {'ok'}
elseif op == 'unsubscribe' then
  local subs, grants = KEYS[1], KEYS[2]
  local bad = typed(subs, 'hash') or (grants and typed(grants, 'hash'))
  if bad then return bad end
  local removed = redis.call('HDEL', subs, ARGV[4])
  if grants then removed = removed + redis.call('HDEL', grants, ARGV[5]) end
  return {'ok', removed}
elseif op == 'ungrant' then
  local grants, n = KEYS[1], tonumber(ARGV[5])
  local bad = typed(grants, 'hash')
  if bad then return bad end
  local removed = 0
  for j = 1, n do removed = removed + redis.call('HDEL', grants, ARGV[5 + j]) end
  return {'ok', removed}
elseif op == 'unshare' then
  local value, meta, tags, subs, stream, fmeta = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
  local model, id, both, field = ARGV[2], ARGV[3], ARGV[4] == 'both', ARGV[5]
  local bad = check_meta(meta, model, id) or typed(subs, 'hash') or typed(fmeta, 'hash')
  if bad then return bad end
  local ng = tonumber(ARGV[6])
  local nt = tonumber(ARGV[7 + ng])
  local ids = KEYS[7 + 2 * ng + nt]
  if ids then
    bad = typed(ids, 'set')
    if bad then return bad end
  end
  local tenants = {}
  for j = 1, nt do
    tenants[ARGV[7 + ng + j]] = 6 + 2 * ng + j
    bad = typed(KEYS[6 + 2 * ng + j], 'hash')
    if bad then return bad end
  end
  -- Every consumer group (and, with both sides, every subscriber) must be among those the
  -- caller read (and declared the keys of); otherwise one was added meanwhile: read again.
  local groups = {}
  for j = 1, ng do groups['group:' .. ARGV[6 + j]] = true end
  for _, f in ipairs(redis.call('HKEYS', fmeta)) do
    if string.sub(f, 1, 6) == 'group:' and not groups[f] then return {'changed'} end
  end
  local subscribers = redis.call('HKEYS', subs)
  if both then
    for _, t in ipairs(subscribers) do
      if not tenants[t] then return {'changed'} end
    end
  end
  local removed = 0
  for j = 1, nt do removed = removed + redis.call('HDEL', KEYS[6 + 2 * ng + j], field) end
  redis.call('DEL', value, meta, tags, subs, stream, fmeta)
  for j = 7, 6 + 2 * ng do redis.call('DEL', KEYS[j]) end
  if ids then redis.call('SREM', ids, id) end
  local out = {'ok', removed}
  for _, t in ipairs(subscribers) do out[#out + 1] = t end
  return out
elseif op == 'fix' then
  local key, field, expected, new = KEYS[1], ARGV[4], ARGV[5], ARGV[6]
  local bad = typed(key, 'hash')
  if bad then return bad end
  if redis.call('HGET', key, field) ~= expected then return {'ok', 0} end
  if new == '' then redis.call('HDEL', key, field) else redis.call('HSET', key, field, new) end
  return {'ok', 1}
elseif op == 'purge' then
  local grants, tenant, n = KEYS[1], ARGV[4], tonumber(ARGV[5])
  local bad = typed(grants, 'hash')
  if bad then return bad end
  local fields = {}
  for j = 1, n do
    fields[ARGV[5 + j]] = KEYS[1 + j]
    bad = typed(KEYS[1 + j], 'hash')
    if bad then return bad end
  end
  for _, f in ipairs(redis.call('HKEYS', grants)) do
    if not fields[f] then return {'changed'} end
  end
  local removed = 0
  for j = 1, n do removed = removed + redis.call('HDEL', KEYS[1 + j], tenant) end
  redis.call('DEL', grants)
  return {'ok', removed}
end
return redis.error_reply('popoto: unknown grants operation ' .. tostring(op))
