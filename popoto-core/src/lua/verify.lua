-- popoto-rs: which candidate instances of a read really belong to its scope (reads never trust
-- index membership: a member may be stale, planted, or another tenant's).
-- KEYS: candidate instance keys (already checked on the client to parse as keys of the model
-- and, for a tenant scope, to carry the tenant's segment).
-- ARGV[1]: the tenant field name, or '' (no tenant check); ARGV[2]: the stored bytes that field
-- must hold (msgpack of the tenant id).
-- Reply: one character per key: '1' an instance of the scope; '0' no such key (a stale entry);
-- '2' a key that exists but is not a hash, or whose tenant field is not exactly ARGV[2].
local field, want = ARGV[1], ARGV[2]
local mask = {}
for i = 1, #KEYS do
  local k = KEYS[i]
  mask[i] = tostring(in_scope(k, field, want))
end
return table.concat(mask)
