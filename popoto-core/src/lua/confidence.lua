-- popoto-rs: one capped Bayesian confidence update, atomically (popoto 1.10.1's formula).
-- KEYS[1]: companion hash; KEYS[2]: the instance hash (must exist).
-- ARGV: member, signal, initial confidence, evidence cap, then one (hash field, 'G' or 'N', bytes)
-- triple per non-key partition field: the instance's stored value the companion key was
-- computed from ('G': must hold these bytes, 'N': must be absent).
-- Stores the entry byte for byte as popoto 1.10.1's update script does: `cmsgpack.pack` of a
-- table built by the same constructor, so the map's key order is the same Lua table order
-- and each number is encoded as cmsgpack encodes it (an integral value as an int, else a
-- float32 when that is exact, else a float64).
-- A model with a change feed (popoto-rs, after the feed prelude): ARGV[5] is the number N of
-- change-event arguments that follow (absent or 0: no event), the event's fields ending with
-- the confidence field's name `f:<field>`; KEYS[3] and KEYS[4] are the tenant's stream and its
-- meta hash. The event, with the new confidence as a msgpack float64, is appended in this
-- call. The partition triples start after the event's arguments.
-- Reply: {'missing'}, {'changed'} (a partition value moved: the caller resolves the companion
-- again), {'corrupt', reason} (the stored entry is not a msgpack map: left as it is),
-- {'wrongtype', key, type} (the stream or its meta hash is not one: nothing written) or
-- 'ok <confidence (%.17g)> <evidence_count> <corroborations> <contradictions>' (one string: a
-- table reply costs the server more than the string).
if redis.call('EXISTS', KEYS[2]) == 0 then return {'missing'} end
local member = ARGV[1]
local signal = tonumber(ARGV[2])
local initial = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
local nfeed = tonumber(ARGV[5]) or 0
if nfeed > 0 then
  local bad = feed_types(KEYS[3], KEYS[4])
  if bad then return bad end
end
local i = 6 + nfeed
while i + 1 <= #ARGV do
  local f, mode = ARGV[i], ARGV[i + 1]
  if mode == 'G' then
    if redis.call('HGET', KEYS[2], f) ~= ARGV[i + 2] then return {'changed'} end
    i = i + 3
  else
    if redis.call('HEXISTS', KEYS[2], f) == 1 then return {'changed'} end
    i = i + 2
  end
end

local c, n, pro, con = initial, 0, 0, 0
local raw = redis.call('HGET', KEYS[1], member)
if raw then
  local ok, t = pcall(cmsgpack.unpack, raw)
  if not ok or type(t) ~= 'table' then
    return {'corrupt', 'the stored entry is not a msgpack map: ' .. tostring(t)}
  end
  c = tonumber(t['confidence'] or t[1]) or initial
  n = tonumber(t['evidence_count'] or t[2]) or 0
  pro = tonumber(t['corroborations'] or t[3]) or 0
  con = tonumber(t['contradictions'] or t[4]) or 0
end

-- Running mean of {prior, signals} while the evidence is under the cap, fixed gain after it.
local weight = math.min(n + 1, cap)
local updated = c + (signal - c) / (weight + 1)
updated = math.max(0, math.min(1, updated))
n = n + 1
if signal >= 0.5 then pro = pro + 1 else con = con + 1 end

-- The same table constructor as popoto's script (keys, order and values): the iteration
-- order cmsgpack follows depends on how the table was built, so do not rewrite it.
local updated_entry = {
    confidence = updated,
    evidence_count = n,
    corroborations = pro,
    contradictions = con
}
redis.call('HSET', KEYS[1], member, cmsgpack.pack(updated_entry))
if nfeed > 0 then
  local ev = {unpack(ARGV, 6, 5 + nfeed)}
  ev[#ev + 1] = struct.pack('>Bd', 0xcb, updated)
  ev[#ev + 1] = 'version'
  ev[#ev + 1] = tostring(redis.call('HINCRBY', KEYS[4], 'seq', 1))
  feed_append(KEYS[3], KEYS[4], ev)
end
return string.format('ok %.17g %d %d %d', updated, n, pro, con)
