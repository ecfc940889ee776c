-- popoto-rs: create (or save) many instances of one model in one call, each all or nothing.
-- KEYS: the distinct index keys of the call (class set, key-field value sets, sorted sets,
-- confidence companion hashes).
-- ARGV[1]: 'C' (create: an instance key must be absent), 'F' (create of keys that hold a uuid4
-- generated for them: they cannot exist, so no EXISTS) or 'S' (save: insert or update);
-- ARGV[2]: the number of instances; then per instance:
--   key, n, n (field, value) pairs,
--   u, u (KEYS index of a unique value set, field tag) pairs,
--   x, x index entries: 'S' k (SADD the key to KEYS[k]), 'Z' k score (ZADD), 'H' k bytes (HSETNX).
-- The client sends instances with distinct keys and distinct unique values in one call, so no
-- instance's checks depend on another's writes.
-- Checks, before any write of the instance, as lua/apply.lua's: a create's key is absent, a
-- unique value set holds no other member, every key written is absent or of the type written
-- (one TYPE per key and call, before the key's first write). A failed check is the instance's
-- reply ({'exists', key}, {'unique', tag, member}, {'wrongtype', key, found}) and nothing of it
-- is written; an instance written replies with its HSET's reply (an integer). Writes: HSET of
-- each instance and HSETNX of its companion entries at once, then one SADD or ZADD per index
-- key with every member added by the call (a thousand per command at most).
local create, check_absent, n = ARGV[1] ~= 'S', ARGV[1] == 'C', tonumber(ARGV[2])
local checked = {}
-- The failure reply of key k written as type t, or nil; one TYPE per key and call.
local function wrong(k, t)
  local c = checked[k]
  if c == nil then
    local found = redis.call('TYPE', KEYS[k]).ok
    if found ~= 'none' and found ~= t then c = {'wrongtype', KEYS[k], found} else c = false end
    checked[k] = c
  end
  return c or nil
end
local out, sets, zsets, p = {}, {}, {}, 3
for j = 1, n do
  local key, nf = ARGV[p], tonumber(ARGV[p + 1])
  local f = p + 2
  p = f + 2 * nf
  local nu = tonumber(ARGV[p]); local u = p + 1; p = u + 2 * nu
  local nx = tonumber(ARGV[p]); local x = p + 1
  local reply = nil
  if check_absent and redis.call('EXISTS', key) == 1 then reply = {'exists', key} end
  local q = u
  for _ = 1, nu do
    if reply then break end
    local set, tag = KEYS[tonumber(ARGV[q])], ARGV[q + 1]
    q = q + 2
    if redis.call('SCARD', set) > 0 then
      for _, m in ipairs(redis.call('SMEMBERS', set)) do
        if m ~= key then reply = {'unique', tag, m}; break end
      end
    end
  end
  if not reply and not create then
    local found = redis.call('TYPE', key).ok
    if found ~= 'none' and found ~= 'hash' then reply = {'wrongtype', key, found} end
  end
  q = x
  for _ = 1, nx do
    local op = ARGV[q]
    if op == 'S' then
      if not reply then reply = wrong(tonumber(ARGV[q + 1]), 'set') end
      q = q + 2
    else
      if not reply then reply = wrong(tonumber(ARGV[q + 1]), op == 'Z' and 'zset' or 'hash') end
      q = q + 3
    end
  end
  if reply then
    out[j] = reply
  else
    out[j] = redis.call('HSET', key, unpack(ARGV, f, f + 2 * nf - 1))
    q = x
    for _ = 1, nx do
      local op, k = ARGV[q], tonumber(ARGV[q + 1])
      if op == 'S' then
        local t = sets[k]
        if not t then t = {}; sets[k] = t end
        t[#t + 1] = key
        q = q + 2
      elseif op == 'Z' then
        local t = zsets[k]
        if not t then t = {}; zsets[k] = t end
        t[#t + 1] = ARGV[q + 2]; t[#t + 1] = key
        q = q + 3
      else
        redis.call('HSETNX', KEYS[k], key, ARGV[q + 2])
        q = q + 3
      end
    end
  end
  p = q
end
-- The index entries of every instance written.
for k, t in pairs(sets) do
  for s = 1, #t, 1000 do redis.call('SADD', KEYS[k], unpack(t, s, math.min(s + 999, #t))) end
end
for k, t in pairs(zsets) do
  for s = 1, #t, 2000 do redis.call('ZADD', KEYS[k], unpack(t, s, math.min(s + 1999, #t))) end
end
return out
