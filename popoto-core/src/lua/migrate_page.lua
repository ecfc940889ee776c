-- popoto-rs: move one scanned page of a legacy unpartitioned index into its partitions.
-- KEYS[1]: the legacy hash or zset; KEYS[2..]: destination partition keys, then the instance key
-- of each entry (declared for EXISTS; the script reads them from ARGV, where they are also the
-- members and fields it moves).
-- ARGV[1]: 'H' (confidence hash entries) or 'Z' (sorted-set members); then per entry the member
-- (an instance key, each at most once) and the KEYS index of its destination; at most 1000.
-- Per entry, all in this one atomic call: the instance key must exist (else 'missing', and the
-- entry stays); an entry already in its partition is kept there ('kept', the legacy one
-- dropped), else it is moved with its bytes or score ('moved'); an entry already gone from the
-- legacy index is 'gone'; a destination of another type gives 'wrongtype:<t>' and the entry
-- stays.
-- Every read and write is one command per page or per destination: EXISTS of the whole page
-- (halved until the missing instances are found), the legacy values, each destination's type,
-- present entries and writes, the legacy removals.
-- Reply: one status per entry, in order.
local src, hash = KEYS[1], ARGV[1] == 'H'
local want = hash and 'hash' or 'zset'
local mget = hash and 'HMGET' or 'ZMSCORE'
local n = (#ARGV - 1) / 2
local names = {}
for j = 1, n do names[j] = ARGV[2 * j] end
-- The instances that do not exist: one EXISTS for a page where all do.
local missing = {}
local function find_missing(lo, hi)
  local found = redis.call('EXISTS', unpack(names, lo, hi))
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
local values = redis.call(mget, src, unpack(names))
-- Entries still in the legacy index, grouped by destination (in order of first use).
local groups, order = {}, {}
for j = 1, n do
  if missing[j] then
    out[j] = 'missing'
  elseif not values[j] then
    out[j] = 'gone'
  else
    local d = ARGV[2 * j + 1]
    local g = groups[d]
    if not g then g = {}; groups[d] = g; order[#order + 1] = d end
    g[#g + 1] = j
  end
end
local removed = {}
for _, d in ipairs(order) do
  local dst, g = KEYS[tonumber(d)], groups[d]
  local t = redis.call('TYPE', dst).ok
  if t ~= 'none' and t ~= want then
    for _, j in ipairs(g) do out[j] = 'wrongtype:' .. t end
  else
    local members = {}
    for k, j in ipairs(g) do members[k] = names[j] end
    local present = (t == 'none') and {} or redis.call(mget, dst, unpack(members))
    local args = {}
    for k, j in ipairs(g) do
      if present[k] then
        out[j] = 'kept'
      else
        out[j] = 'moved'
        if hash then
          args[#args + 1] = names[j]; args[#args + 1] = values[j]
        else
          args[#args + 1] = values[j]; args[#args + 1] = names[j]
        end
      end
      removed[#removed + 1] = names[j]
    end
    if #args > 0 then redis.call(hash and 'HSET' or 'ZADD', dst, unpack(args)) end
  end
end
if #removed > 0 then redis.call(hash and 'HDEL' or 'ZREM', src, unpack(removed)) end
return out
