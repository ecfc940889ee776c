-- popoto-rs: create.lua's fast path, placed before the library so that a plain create defines
-- none of its functions. ARGV[1] 'P': one instance under a uuid4 key generated for this create
-- (no entry of it can exist yet), whose index entries are only 'S', 'Z' and 'H' (no unique
-- check, no expiry); arguments otherwise as create.lua's one-instance form. Every entry is
-- added; if a write fails, what this call added is removed and the reply is create.lua's.
if ARGV[1] == 'P' then
  local key, nk = KEYS[1], #KEYS
  local last = 2 + 2 * ARGV[2]
  local base = last - 3
  local written = redis.pcall('HSET', key, unpack(ARGV, 3, last))
  if type(written) == 'table' then return written end
  -- Entries found already there (impossible for a fresh key): never removed by an undo, and
  -- a rescored zset member gets its old score back.
  local kept, rescored
  for i = 2, nk do
    local op, k = ARGV[base + 2 * i], KEYS[i]
    local r
    if op == 'Z' then
      r = redis.pcall('ZADD', k, 'NX', ARGV[base + 2 * i + 1], key)
      if r == 0 then
        rescored = rescored or {}
        rescored[#rescored + 1] = {k, redis.call('ZSCORE', k, key)}
        r = redis.pcall('ZADD', k, ARGV[base + 2 * i + 1], key)
        if r == 0 then r = 'kept' end
      end
    elseif op == 'H' then r = redis.pcall('HSETNX', k, key, ARGV[base + 2 * i + 1])
    else r = redis.pcall('SADD', k, key) end
    if r == 0 or r == 'kept' then
      kept = kept or {}
      kept[i] = true
    elseif r ~= 1 then
      redis.call('DEL', key)
      for u = i - 1, 2, -1 do
        if not (kept and kept[u]) then
          local uop = ARGV[base + 2 * u]
          if uop == 'Z' then redis.call('ZREM', KEYS[u], key)
          elseif uop == 'H' then redis.call('HDEL', KEYS[u], key)
          else redis.call('SREM', KEYS[u], key) end
        end
      end
      for j = #(rescored or {}), 1, -1 do
        redis.call('ZADD', rescored[j][1], rescored[j][2], key)
      end
      local want = (op == 'Z' and 'zset') or (op == 'H' and 'hash') or 'set'
      local t = redis.call('TYPE', k).ok
      if t ~= 'none' and t ~= want then return {'wrongtype', k, t} end
      return r
    end
  end
  return written
end
