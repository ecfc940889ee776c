-- popoto-rs: a read of one shared instance, its grant checked in the same call.
-- KEYS: 1 value hash, 2 meta hash, 3 tags hash, 4 subscribers hash.
-- ARGV: 1 model, 2 id, 3 reading tenant ('' for the host).
-- Reply: {'ok', value pairs, meta pairs, tag pairs, access ('r' | 'w' | 'host')}
--      | {'missing'} | {'denied', 'none'} | {'corrupt', reason}
local value, meta, tags, subs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local model, id, who = ARGV[1], ARGV[2], ARGV[3]
if redis.call('TYPE', meta).ok ~= 'hash' then
  if who ~= '' then return {'denied', 'none'} end
  if redis.call('EXISTS', meta) == 1 then return {'corrupt', 'the meta key is not a hash'} end
  return {'missing'}
end
local m = redis.call('HMGET', meta, 'model', 'id')
if m[1] ~= model or m[2] ~= id then
  if who ~= '' then return {'denied', 'none'} end
  if not m[1] then return {'missing'} end
  return {'corrupt', 'the meta hash names another instance'}
end
local access = 'host'
if who ~= '' then
  if redis.call('TYPE', subs).ok ~= 'hash' then return {'denied', 'none'} end
  access = redis.call('HGET', subs, who)
  if access ~= 'r' and access ~= 'w' then return {'denied', 'none'} end
end
for _, k in ipairs({value, tags}) do
  local t = redis.call('TYPE', k).ok
  if t ~= 'none' and t ~= 'hash' then return {'corrupt', 'a key of the instance is a ' .. t} end
end
return {'ok', redis.call('HGETALL', value), redis.call('HGETALL', meta),
  redis.call('HGETALL', tags), access}
