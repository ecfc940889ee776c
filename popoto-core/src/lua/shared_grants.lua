-- popoto-rs: grants of shared instances, kept on both sides in one call: the instance's
-- subscribers hash (tenant -> r | w, what every read and write script checks) and the tenant's
-- grants hash (instance field -> '<access>:<feed start id>', what a tenant lists).
-- ARGV[1] is the operation; KEYS and the other arguments depend on it:
--   subscribe    KEYS meta, subs, grants, stream; ARGV model, id, tenant, field, access
--                -> {'ok', feed start id, version} | {'missing'}
--   unsubscribe  KEYS subs, grants; ARGV -, -, tenant, field -> {'ok', entries removed}
--   unshare      KEYS value, meta, tags, subs, ids, stream, feed meta, then one grants key per
--                tenant, then the done and dead keys of each consumer group;
--                ARGV model, id, -, field, n tenants, tenants, n groups, groups
--                -> {'ok', subscribers removed} | {'missing'} | {'changed'}
--   purge        KEYS grants, then one subscribers key per field (a tenant being destroyed);
--                ARGV -, -, tenant, n, fields -> {'ok', grants removed} | {'changed'}
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
  local meta, subs, grants, stream = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  local model, id, tenant, field, access = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  local bad = check_meta(meta, model, id) or typed(subs, 'hash') or typed(grants, 'hash')
    or typed(stream, 'stream')
  if bad then return bad end
  if access ~= 'r' and access ~= 'w' then return {'corrupt', 'access must be r or w'} end
  -- A change of access keeps the feed position of the first subscription.
  local old = redis.call('HGET', grants, field)
  local start = old and string.match(old, '^[rw]:(%d+%-%d+)$')
  if not start then
    local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
    start = (last[1] and last[1][1]) or '0-0'
  end
  redis.call('HSET', subs, tenant, access)
  redis.call('HSET', grants, field, access .. ':' .. start)
  return {'ok', start, redis.call('HGET', meta, 'version')}
elseif op == 'unsubscribe' then
  local subs, grants = KEYS[1], KEYS[2]
  local bad = typed(subs, 'hash') or typed(grants, 'hash')
  if bad then return bad end
  return {'ok', redis.call('HDEL', subs, ARGV[4]) + redis.call('HDEL', grants, ARGV[5])}
elseif op == 'unshare' then
  local value, meta, tags, subs, ids, stream, fmeta = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
  local model, id, field = ARGV[2], ARGV[3], ARGV[5]
  local bad = check_meta(meta, model, id) or typed(subs, 'hash') or typed(ids, 'set')
    or typed(fmeta, 'hash')
  if bad then return bad end
  local nt = tonumber(ARGV[6])
  local tenants = {}
  for j = 1, nt do
    tenants[ARGV[6 + j]] = 7 + j
    bad = typed(KEYS[7 + j], 'hash')
    if bad then return bad end
  end
  -- Every subscriber and every consumer group must be among those the caller read (and
  -- declared the keys of); otherwise one was added meanwhile: read again.
  for _, t in ipairs(redis.call('HKEYS', subs)) do
    if not tenants[t] then return {'changed'} end
  end
  local ng = tonumber(ARGV[7 + nt])
  local groups = {}
  for j = 1, ng do groups['group:' .. ARGV[7 + nt + j]] = true end
  for _, f in ipairs(redis.call('HKEYS', fmeta)) do
    if string.sub(f, 1, 6) == 'group:' and not groups[f] then return {'changed'} end
  end
  local removed = 0
  for j = 1, nt do removed = removed + redis.call('HDEL', KEYS[7 + j], field) end
  redis.call('DEL', value, meta, tags, subs, stream, fmeta)
  for j = 8 + nt, #KEYS do redis.call('DEL', KEYS[j]) end
  redis.call('SREM', ids, id)
  return {'ok', removed}
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
