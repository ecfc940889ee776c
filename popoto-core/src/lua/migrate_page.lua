-- popoto-rs: move one scanned page of a legacy unpartitioned index into its partitions.
-- KEYS[1]: the legacy hash or zset; KEYS[2..]: destination partition keys.
-- ARGV[1]: 'H' (confidence hash entries) or 'Z' (sorted-set members); then per entry the member
-- (an instance key) and the KEYS index of its destination; at most 1000 entries.
-- Per entry, all in this one atomic call: the instance must be a hash (else 'missing' or
-- 'type:<t>', and the entry stays); an entry already in its partition is kept there ('kept',
-- the legacy one dropped), else it is moved with its bytes or score ('moved'); an entry already
-- gone from the legacy index (or listed twice) is 'gone'; a destination of another type gives
-- 'wrongtype:<t>' and the entry stays.
-- One TYPE per entry; the reads and writes are one command per page (legacy values, legacy
-- removals) or per destination (its type, its present entries, its writes).
-- Reply: one status per entry, in order.
local src, hash = KEYS[1], ARGV[1] == 'H'
local want = hash and 'hash' or 'zset'
local mget = hash and 'HMGET' or 'ZMSCORE'
local out, eligible, seen = {}, {}, {}
for j = 1, (#ARGV - 1) / 2 do
  local member = ARGV[2 * j]
  local ty = redis.call('TYPE', member).ok
  if ty ~= 'hash' then
    out[j] = (ty == 'none') and 'missing' or ('type:' .. ty)
  elseif seen[member] then
    out[j] = 'gone'
  else
    seen[member] = true
    eligible[#eligible + 1] = j
  end
end
if #eligible == 0 then return out end
local names = {}
for i, j in ipairs(eligible) do names[i] = ARGV[2 * j] end
local values = redis.call(mget, src, unpack(names))
-- Entries still in the legacy index, grouped by destination (in order of first use).
local groups, order = {}, {}
for i, j in ipairs(eligible) do
  if values[i] then
    local d = ARGV[2 * j + 1]
    local g = groups[d]
    if not g then g = {}; groups[d] = g; order[#order + 1] = d end
    g[#g + 1] = i
  else
    out[eligible[i]] = 'gone'
  end
end
local removed = {}
for _, d in ipairs(order) do
  local dst, g = KEYS[tonumber(d)], groups[d]
  local t = redis.call('TYPE', dst).ok
  if t ~= 'none' and t ~= want then
    for _, i in ipairs(g) do out[eligible[i]] = 'wrongtype:' .. t end
  else
    local members = {}
    for k, i in ipairs(g) do members[k] = names[i] end
    local present = (t == 'none') and {} or redis.call(mget, dst, unpack(members))
    local args = {}
    for k, i in ipairs(g) do
      if present[k] then
        out[eligible[i]] = 'kept'
      else
        out[eligible[i]] = 'moved'
        if hash then
          args[#args + 1] = names[i]; args[#args + 1] = values[i]
        else
          args[#args + 1] = values[i]; args[#args + 1] = names[i]
        end
      end
      removed[#removed + 1] = names[i]
    end
    if #args > 0 then redis.call(hash and 'HSET' or 'ZADD', dst, unpack(args)) end
  end
end
if #removed > 0 then redis.call(hash and 'HDEL' or 'ZREM', src, unpack(removed)) end
return out
