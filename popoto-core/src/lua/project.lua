-- popoto-rs: some fields of candidate instances (a projection), each instance verified against
-- the read's scope exactly as lua/verify.lua does, in the same call.
-- KEYS: candidate instance keys (already checked on the client to parse as keys of the model
-- and, for a tenant scope, to carry the tenant's segment).
-- ARGV[1]: the tenant field name, or '' (no tenant check); ARGV[2]: the stored bytes that field
-- must hold (msgpack of the tenant id); ARGV[3..]: the hash fields to read.
-- Reply: one entry per key: the fields' values (HMGET, nil for a missing field) for an instance
-- of the scope; else 0 (no such key: a stale entry) or 2 (not a hash, or a tenant field that is
-- not exactly ARGV[2]).
local field, want = ARGV[1], ARGV[2]
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
local out = {}
for i = 1, #KEYS do
  local k = KEYS[i]
  local ok = in_scope(k, field, want)
  if ok == 1 then
    if #fields == 0 then out[i] = {} else out[i] = redis.call('HMGET', k, unpack(fields)) end
  else
    out[i] = ok
  end
end
return out
