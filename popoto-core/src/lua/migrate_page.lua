-- popoto-rs: move one scanned page of a legacy unpartitioned index into its partitions.
-- KEYS[1]: the legacy hash or zset; KEYS[2..]: destination partition keys.
-- ARGV[1]: 'H' (confidence hash entries) or 'Z' (sorted-set members); then per entry the member
-- (an instance key) and the KEYS index of its destination.
-- Per entry, all in this one atomic call: the instance must be a hash (else 'missing' or
-- 'type:<t>', and the entry stays); an entry already in its partition is kept there ('kept',
-- the legacy one dropped), else it is moved with its bytes or score ('moved'); an entry already
-- gone from the legacy index is 'gone'; a destination of another type gives 'wrongtype:<t>'.
-- Reply: one status per entry, in order.
local src, hash = KEYS[1], ARGV[1] == 'H'
local want = hash and 'hash' or 'zset'
local dest_ok = {}
local out = {}
for i = 2, #ARGV, 2 do
  local member = ARGV[i]
  local dst = KEYS[tonumber(ARGV[i + 1])]
  local ty = redis.call('TYPE', member).ok
  if ty ~= 'hash' then
    out[#out + 1] = (ty == 'none') and 'missing' or ('type:' .. ty)
  else
    local ok = dest_ok[dst]
    if ok == nil then
      local t = redis.call('TYPE', dst).ok
      ok = (t == 'none' or t == want) and true or t
      dest_ok[dst] = ok
    end
    if ok ~= true then
      out[#out + 1] = 'wrongtype:' .. ok
    elseif hash then
      local v = redis.call('HGET', src, member)
      if not v then
        out[#out + 1] = 'gone'
      else
        local added = redis.call('HSETNX', dst, member, v)
        redis.call('HDEL', src, member)
        out[#out + 1] = (added == 1) and 'moved' or 'kept'
      end
    else
      local s = redis.call('ZSCORE', src, member)
      if not s then
        out[#out + 1] = 'gone'
      else
        local kept = redis.call('ZSCORE', dst, member)
        if not kept then redis.call('ZADD', dst, s, member) end
        redis.call('ZREM', src, member)
        out[#out + 1] = kept and 'kept' or 'moved'
      end
    end
  end
end
return out
