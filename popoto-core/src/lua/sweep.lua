-- popoto-rs: remove the index entries of expired instances (Redis expires a hash, never the set
-- and zset members that index it).
-- KEYS[1]: an expiry set ($ExpireF); then, per member examined: its instance key, then the index
-- keys its key derives (every key its writes put it in, the expiry set excepted).
-- ARGV[1]: the number of members; then per member: the number of its index keys and one letter
-- per index key: 's' a set member, 'z' a zset member, 'h' a hash entry (confidence).
-- Per member, atomically with respect to every writer:
--   no hash at its key any more (expired, or deleted behind popoto's back): each index entry
--   and its expiry entry are removed ('x');
--   a hash without expiry (written again without one): only its expiry entry is removed ('p');
--   a hash with an expiry: its expiry entry is scored with that time ('r': the hash's TTL was
--   set by another writer, a Python client's EXPIRE for one).
-- An index key of another Redis type is not ours: left as it is.
-- Reply: one letter per member.
local z, n = KEYS[1], tonumber(ARGV[1])
local k, a, out = 2, 2, {}
for j = 1, n do
  local key, cnt, kinds = KEYS[k], tonumber(ARGV[a]), ARGV[a + 1]
  if redis.call('EXISTS', key) == 0 then
    for i = 1, cnt do
      local ik, kind = KEYS[k + i], string.sub(kinds, i, i)
      if kind == 's' then redis.pcall('SREM', ik, key)
      elseif kind == 'z' then redis.pcall('ZREM', ik, key)
      else redis.pcall('HDEL', ik, key) end
    end
    redis.call('ZREM', z, key)
    out[j] = 'x'
  else
    -- The hash's own expiry time (PEXPIRETIME: exact, where now + PTTL can be off by 1 ms).
    local at = redis.call('PEXPIRETIME', key)
    if at < 0 then
      redis.call('ZREM', z, key)
      out[j] = 'p'
    else
      redis.call('ZADD', z, at, key)
      out[j] = 'r'
    end
  end
  k, a = k + 1 + cnt, a + 2
end
return table.concat(out)
