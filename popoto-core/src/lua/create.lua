-- popoto-rs: create one instance, all or nothing, with the fewest server commands.
-- KEYS[1]: the instance key; KEYS[2..]: its index keys and unique value sets.
-- ARGV: nf, nf (field, value) pairs; nu, nu (KEYS index of a unique value set, field tag) pairs;
-- ni, ni index writes (op, KEYS index, arg): 'S' SADD the instance key, 'Z' ZADD it with score
-- arg, 'H' HSETNX it with value arg (a confidence entry).
-- Checks first: the key is absent, no unique value set holds another instance. Then the hash and
-- the index writes; if one fails (another program left a wrong type on an index key, or the
-- server is out of memory), everything this call wrote is undone before replying, so the
-- instance and its index entries are all there or all gone.
-- Reply: {'ok', HSET reply}, {'exists', key}, {'unique', tag, member}, {'wrongtype', key, type}
-- or the failing command's error.
local key = KEYS[1]
if redis.call('EXISTS', key) == 1 then return {'exists', key} end
local nf = tonumber(ARGV[1])
local p = 2 + 2 * nf
local nu = tonumber(ARGV[p]); p = p + 1
for _ = 1, nu do
  local set = KEYS[tonumber(ARGV[p])]; local tag = ARGV[p + 1]; p = p + 2
  local members = redis.pcall('SMEMBERS', set)
  if members.err then return {'wrongtype', set, redis.call('TYPE', set).ok} end
  for _, m in ipairs(members) do
    if m ~= key then return {'unique', tag, m} end
  end
end
local written = redis.pcall('HSET', key, unpack(ARGV, 2, 1 + 2 * nf))
if type(written) == 'table' and written.err then return written end
local undo = {}
local ni = tonumber(ARGV[p]); p = p + 1
for _ = 1, ni do
  local op = ARGV[p]; local k = KEYS[tonumber(ARGV[p + 1])]; local arg = ARGV[p + 2]; p = p + 3
  local r, kind
  if op == 'S' then r = redis.pcall('SADD', k, key); kind = 'set'
  elseif op == 'Z' then r = redis.pcall('ZADD', k, arg, key); kind = 'zset'
  else r = redis.pcall('HSETNX', k, key, arg); kind = 'hash' end
  if type(r) == 'table' and r.err then
    redis.call('DEL', key)
    for i = #undo, 1, -1 do
      local u = undo[i]
      if u[1] == 'S' then redis.call('SREM', u[2], key)
      elseif u[1] == 'Z' then redis.call('ZREM', u[2], key)
      else redis.call('HDEL', u[2], key) end
    end
    local found = redis.call('TYPE', k).ok
    if found ~= 'none' and found ~= kind then return {'wrongtype', k, found} end
    return r
  end
  -- Only entries this call added are undone: an index entry left by an earlier writer stays.
  if r == 1 then undo[#undo + 1] = {op, k} end
end
return {'ok', written}
