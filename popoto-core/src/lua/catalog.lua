-- Compare-and-set of one tenant catalog entry (popoto-core/src/catalog/store.rs).
-- KEYS[1] the entry hash, KEYS[2] the zset of every id, KEYS[3..5] the zsets of the active,
-- suspended and destroyed ids, KEYS[6] the catalog's change counter.
-- ARGV[1] tenant id, ARGV[2] the entry version the change is based on ('0': no entry),
-- ARGV[3] the new status (1 active, 2 suspended, 3 destroyed), ARGV[4] the pub/sub channel the
-- change is announced on (the tenant id is published), ARGV[5..] field, value pairs.
-- Replies {'ok', catalog version} | {'conflict', found version} | {'wrongtype', key, type}.
local want = {'hash', 'zset', 'zset', 'zset', 'zset', 'string'}
for i = 1, 6 do
  local bad = typed(KEYS[i], want[i])
  if bad then return bad end
end
local found = '0'
if redis.call('EXISTS', KEYS[1]) == 1 then
  found = redis.call('HGET', KEYS[1], 'version') or 'none'
end
if found ~= ARGV[2] then
  return {'conflict', found}
end
if redis.call('EXISTS', KEYS[6]) == 1 and not tonumber(redis.call('GET', KEYS[6])) then
  return {'wrongtype', KEYS[6], 'string that is not a counter'}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
for i = 3, 5 do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
redis.call('ZADD', KEYS[2 + tonumber(ARGV[3])], 0, ARGV[1])
local version = redis.call('INCR', KEYS[6])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return {'ok', version}
