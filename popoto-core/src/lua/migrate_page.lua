-- popoto-rs: move one scanned page of a legacy unpartitioned index into its partitions.
-- KEYS[1]: the legacy hash or zset; KEYS[2..]: destination partition keys, then the instance key
-- of each entry (each at most once: the member it moves, and the key EXISTS checks).
-- ARGV[1]: 'H' (confidence hash entries) or 'Z' (sorted-set members); then per entry, in the
-- order of the instance keys, the KEYS index of its destination; at most 1000 entries.
-- Per entry, all in this one atomic call: the instance key must exist (else 'x', and the entry
-- stays); an entry already in its partition is kept there ('k', the legacy one dropped), else
-- it is moved with its bytes or score ('m'); an entry already gone from the legacy index is 'g';
-- a destination of another type gives 'w' and the entry stays.
-- Every read and write is one command per page or per destination: EXISTS of the whole page
-- (halved until the missing instances are found), the legacy values, each destination's type,
-- present entries and writes, the legacy removals.
-- Reply: {codes, type...}: one code character per entry, in order, then the type found for each
-- 'w' entry, in order (one string, not a reply per entry: the server and client parse less).
local src, hash = KEYS[1], ARGV[1] == 'H'
local want = hash and 'hash' or 'zset'
local mget = hash and 'HMGET' or 'ZMSCORE'
local n = #ARGV - 1
local base = #KEYS - n
-- The instances that do not exist: one EXISTS for a page where all do.
local missing = {}
local function find_missing(lo, hi)
  local found = redis.call('EXISTS', unpack(KEYS, base + lo, base + hi))
  if found == hi - lo + 1 then return end
  if found == 0 or lo == hi then
    for i = lo, hi do missing[i] = true end
    return
  end
  local mid = math.floor((lo + hi) / 2)
  find_missing(lo, mid)
  find_missing(mid + 1, hi)
end
find_missing(1, n)
local out = {}
local values = redis.call(mget, src, unpack(KEYS, base + 1, base + n))
-- Entries still in the legacy index, grouped by destination (in order of first use).
local groups, order = {}, {}
for j = 1, n do
  if missing[j] then
    out[j] = 'x'
  elseif not values[j] then
    out[j] = 'g'
  else
    local d = ARGV[j + 1]
    local g = groups[d]
    if not g then g = {}; groups[d] = g; order[#order + 1] = d end
    g[#g + 1] = j
  end
end
local removed, types = {}, {}
for o = 1, #order do
  local d = order[o]
  local dst, g = KEYS[tonumber(d)], groups[d]
  local t = redis.call('TYPE', dst).ok
  if t ~= 'none' and t ~= want then
    for x = 1, #g do out[g[x]] = 'w' end
    types[d] = t
  else
    local present = {}
    if t ~= 'none' then
      local members = {}
      for x = 1, #g do members[x] = KEYS[base + g[x]] end
      present = redis.call(mget, dst, unpack(members))
    end
    local args = {}
    for x = 1, #g do
      local j = g[x]
      local name = KEYS[base + j]
      if present[x] then
        out[j] = 'k'
      else
        out[j] = 'm'
        if hash then
          args[#args + 1] = name; args[#args + 1] = values[j]
        else
          args[#args + 1] = values[j]; args[#args + 1] = name
        end
      end
      removed[#removed + 1] = name
    end
    if #args > 0 then redis.call(hash and 'HSET' or 'ZADD', dst, unpack(args)) end
  end
end
if #removed > 0 then redis.call(hash and 'HDEL' or 'ZREM', src, unpack(removed)) end
local reply = {table.concat(out)}
for j = 1, n do
  if out[j] == 'w' then reply[#reply + 1] = types[ARGV[j + 1]] end
end
return reply
