-- popoto-rs: the library: the helpers and checks several scripts share, written once. A
-- script's source holds the functions of it that the script calls (`compose` in
-- src/script/mod.rs), so each block below is one function with its comment, blocks separated by
-- one blank line and no blank line inside a block.

-- The p-th ':'-separated segment of an instance key after its class name (escaped segments
-- never hold ':'), or nil.
local function seg(s, p)
  local start = 1
  for _ = 1, p do
    local c = string.find(s, ':', start, true)
    if not c then return nil end
    start = c + 1
  end
  local e = string.find(s, ':', start, true)
  return string.sub(s, start, (e or 0) - 1)
end

-- The server's time in ms since the epoch.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- An expiry time in ms since the epoch: 'A<ms>' as is, 'R<ms>' after the server's time.
local function expiry_at(spec)
  local n = tonumber(string.sub(spec, 2))
  if string.sub(spec, 1, 1) == 'R' then n = now_ms() + n end
  return n
end

-- nil if `key` is absent or of Redis type `want`, else the refusal {'wrongtype', key, found}.
local function typed(key, want)
  local t = redis.call('TYPE', key).ok
  if t ~= 'none' and t ~= want then return {'wrongtype', key, t} end
  return nil
end

-- The unique check of a value set: nil when `set` holds no member but `m1` and `m2` (with p > 0,
-- counting only members whose segment p is m1's: a value unique within one tenant), else the
-- refusal {'unique', tag, member}, or {'wrongtype', set, found} when `set` is not a set.
local function unique_refusal(set, tag, m1, m2, p)
  local members = redis.pcall('SMEMBERS', set)
  if members.err then return {'wrongtype', set, redis.call('TYPE', set).ok} end
  local own = p > 0 and seg(m1, p) or nil
  for _, m in ipairs(members) do
    if m ~= m1 and m ~= m2 and (p == 0 or seg(m, p) == own) then return {'unique', tag, m} end
  end
  return nil
end

-- Whether candidate instance `k` of a read belongs to its scope: 1 yes; 0 no such key (a stale
-- index entry); 2 a key that is not a hash, or whose tenant field `field` does not hold exactly
-- the bytes `want` (`field` '': no tenant check).
local function in_scope(k, field, want)
  if field == '' then
    local len = redis.pcall('HLEN', k)
    if type(len) ~= 'number' then return 2 end
    if len > 0 then return 1 end
    return 0
  end
  local v = redis.pcall('HGET', k, field)
  if v == want then return 1 end
  if v == false and redis.call('EXISTS', k) == 0 then return 0 end
  return 2
end

