-- popoto-rs: create one instance, all or nothing, with the fewest server commands.
-- KEYS[1]: the instance key; KEYS[2..]: its index keys, one per index entry.
-- ARGV[1]: 'F' (the key holds a uuid4 generated for this create: it cannot exist, so no EXISTS)
-- or 'C'; ARGV[2]: nf; then nf (field, value) pairs; then one (op, arg) pair per index key:
-- 'S' SADD the instance key, 'U' the same into a unique value set (arg: the field tag), 'V' the
-- same into a unique value set shared by tenants (arg: '<tag> <p>': only members whose key has
-- the instance key's segment at position p conflict), 'Z' ZADD it with score arg, 'H' HSETNX it
-- with value arg (a confidence entry), 'X' ZADD it into the expiry set with the expiry time
-- (arg: 'A<ms>' absolute, 'R<ms>' after the server's TIME) and, once everything is written,
-- PEXPIREAT the hash at that time.
-- Checks first: the key is absent, no unique value set holds another instance. Then the hash and
-- the index writes; if one fails (another program left a wrong type on an index key, or the
-- server is out of memory), everything this call wrote is undone before replying, so the
-- instance and its index entries are all there or all gone.
-- Reply: {'ok', HSET reply}, {'exists', key}, {'unique', tag, member}, {'wrongtype', key, type}
-- or the failing command's error.
local key = KEYS[1]
-- The p-th ':'-separated segment of an instance key after its class name, or nil.
local function seg(s, p)
  local start = 1
  for _ = 1, p do
    local c = string.find(s, ':', start, true)
    if not c then return nil end
    start = c + 1
  end
  local e = string.find(s, ':', start, true)
  return string.sub(s, start, (e or 0) - 1)
end
if ARGV[1] ~= 'F' and redis.call('EXISTS', key) == 1 then return {'exists', key} end
local last = 2 + 2 * tonumber(ARGV[2])
-- The (op, arg) pair of KEYS[i] is ARGV[base + 2 * i], ARGV[base + 2 * i + 1].
local base = last - 3
for i = 2, #KEYS do
  local op = ARGV[base + 2 * i]
  if op == 'U' or op == 'V' then
    local set, tag, own, p = KEYS[i], ARGV[base + 2 * i + 1], nil, 0
    if op == 'V' then
      local t, q = string.match(tag, '^(%d+) (%d+)$')
      tag, p = t, tonumber(q)
      own = seg(key, p)
    end
    local members = redis.pcall('SMEMBERS', set)
    if members.err then return {'wrongtype', set, redis.call('TYPE', set).ok} end
    for _, m in ipairs(members) do
      if m ~= key and (p == 0 or seg(m, p) == own) then return {'unique', tag, m} end
    end
  end
end
local written = redis.pcall('HSET', key, unpack(ARGV, 3, last))
if type(written) == 'table' and written.err then return written end
-- KEYS indices of the entries this call added: only those are undone on a failure, an index
-- entry left by an earlier writer stays.
-- A zset member left by an earlier writer keeps its score unless this call completes: its old
-- score is read (only then) before it is overwritten, and restored by the undo.
local added, rescored = {}, {}
local expire = nil
for i = 2, #KEYS do
  local op, k, arg = ARGV[base + 2 * i], KEYS[i], ARGV[base + 2 * i + 1]
  local r
  if op == 'X' then
    local n = tonumber(string.sub(arg, 2))
    if string.sub(arg, 1, 1) == 'R' then
      local t = redis.call('TIME')
      n = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + n
    end
    expire = n
    op, arg = 'Z', n
  end
  if op == 'Z' then
    r = redis.pcall('ZADD', k, 'NX', arg, key)
    if r == 0 then
      rescored[#rescored + 1] = {k, redis.call('ZSCORE', k, key)}
      r = redis.pcall('ZADD', k, arg, key)
    end
  elseif op == 'H' then r = redis.pcall('HSETNX', k, key, arg)
  else r = redis.pcall('SADD', k, key) end
  if type(r) == 'table' and r.err then
    redis.call('DEL', key)
    for j = #added, 1, -1 do
      local u = added[j]
      local uop = ARGV[base + 2 * u]
      if uop == 'Z' or uop == 'X' then redis.call('ZREM', KEYS[u], key)
      elseif uop == 'H' then redis.call('HDEL', KEYS[u], key)
      else redis.call('SREM', KEYS[u], key) end
    end
    for j = #rescored, 1, -1 do
      redis.call('ZADD', rescored[j][1], rescored[j][2], key)
    end
    local kind = (op == 'Z' and 'zset') or (op == 'H' and 'hash') or 'set'
    local found = redis.call('TYPE', k).ok
    if found ~= 'none' and found ~= kind then return {'wrongtype', k, found} end
    return r
  end
  if r == 1 then added[#added + 1] = i end
end
if expire then redis.call('PEXPIREAT', key, expire) end
return {'ok', written}
