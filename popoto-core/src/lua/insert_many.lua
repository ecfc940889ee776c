-- popoto-rs: create (or save) many instances of one model in one call, each all or nothing.
-- KEYS: the distinct index keys of the call (class set, key-field value sets, sorted sets,
-- confidence companion hashes), then the instance key of each instance, in order: every key the
-- script touches is declared.
-- ARGV[1]: 'C' (create: an instance key must be absent), 'F' (create of keys that hold a uuid4
-- generated for them: they cannot exist, so no EXISTS) or 'S' (save: insert or update);
-- ARGV[2]: the number of instances; ARGV[3]: one letter per KEYS index, what is written there
-- ('s' set members, 'z' zset members, 'h' hash entries); ARGV[4..8]: nf, nu, ns, nz, nh, the
-- same for every instance of a model; then per instance:
--   nf (field, value) pairs,
--   nu (KEYS index of a unique value set, field tag, p) triples: p 0, no other member may be in
--   the set; else only members whose key has the instance key's segment at position p (after
--   the class name) conflict (a unique value within one tenant),
--   ns KEYS indices of sets to SADD the key to,
--   nz (KEYS index, score) pairs to ZADD it to,
--   nh (KEYS index, bytes) pairs to HSETNX it into (confidence entries).
-- The client sends instances with distinct keys and distinct unique values in one call, so no
-- instance's checks depend on another's writes.
-- Checks, before any write of the instance, as lua/apply.lua's: a create's key is absent, every
-- index key written is absent or of the type written (one TYPE per key and call, first), a
-- unique value set holds no other member. A failed check is the instance's reply
-- ({'exists', key}, {'wrongtype', key, found}, {'unique', tag, member}) and nothing of it is
-- written; an instance written replies with its HSET's reply (an integer). Writes: HSET of each
-- instance and HSETNX of its companion entries at once, then one SADD or ZADD per index key
-- with every member added by the call (a thousand per command at most).
local mode, n, kinds = ARGV[1], tonumber(ARGV[2]), ARGV[3]
-- Index keys come first in KEYS; instance j's key is KEYS[ni + j].
local ni = #KEYS - n
local create, check_absent = mode ~= 'S', mode == 'C'
local names = {s = 'set', z = 'zset', h = 'hash'}
-- Index keys holding another type, and what each key collects.
local bad, anybad, lists, counts = {}, false, {}, {}
for k = 1, ni do
  local found = redis.call('TYPE', KEYS[k]).ok
  if found ~= 'none' and found ~= names[string.sub(kinds, k, k)] then
    bad[k] = {'wrongtype', KEYS[k], found}
    anybad = true
  end
  lists[k] = {}
  counts[k] = 0
end
local nf, nu, ns = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local nz, nh = tonumber(ARGV[7]), tonumber(ARGV[8])
-- Offsets of each part from an instance's key.
local fo = 0
local uo = fo + 2 * nf
local so = uo + 3 * nu
local zo = so + ns
local ho = zo + 2 * nz
local stride = ho + 2 * nh
local out = {}
for j = 1, n do
  local p = 9 + (j - 1) * stride
  local key = KEYS[ni + j]
  local f, u, s, z, h = p + fo, p + uo, p + so, p + zo, p + ho
  local reply = nil
  if check_absent and redis.call('EXISTS', key) == 1 then reply = {'exists', key} end
  if not reply and not create then reply = typed(key, 'hash') end
  if anybad and not reply then
    for i = s, s + ns - 1 do reply = reply or bad[tonumber(ARGV[i])] end
    for i = z, z + 2 * nz - 2, 2 do reply = reply or bad[tonumber(ARGV[i])] end
    for i = h, h + 2 * nh - 2, 2 do reply = reply or bad[tonumber(ARGV[i])] end
  end
  for i = u, u + 3 * nu - 3, 3 do
    if reply then break end
    reply = unique_refusal(KEYS[tonumber(ARGV[i])], ARGV[i + 1], key, nil, tonumber(ARGV[i + 2]))
  end
  if reply then
    out[j] = reply
  else
    out[j] = redis.call('HSET', key, unpack(ARGV, f, f + 2 * nf - 1))
    for i = s, s + ns - 1 do
      local k = tonumber(ARGV[i])
      local c = counts[k] + 1
      counts[k] = c
      lists[k][c] = key
    end
    for i = z, z + 2 * nz - 2, 2 do
      local k = tonumber(ARGV[i])
      local c, l = counts[k], lists[k]
      l[c + 1] = ARGV[i + 1]
      l[c + 2] = key
      counts[k] = c + 2
    end
    for i = h, h + 2 * nh - 2, 2 do
      redis.call('HSETNX', KEYS[tonumber(ARGV[i])], key, ARGV[i + 1])
    end
  end
end
-- The index entries of every instance written.
for k = 1, ni do
  local c, l = counts[k], lists[k]
  if c > 0 then
    local cmd, step = 'SADD', 1000
    if string.sub(kinds, k, k) == 'z' then cmd, step = 'ZADD', 2000 end
    for st = 1, c, step do redis.call(cmd, KEYS[k], unpack(l, st, math.min(st + step - 1, c))) end
  end
end
return out
