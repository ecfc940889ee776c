-- popoto-rs: the grants a change feed's fan-out hands entries under, checked in one call (a
-- read-only script) per slot.
-- ARGV[1]: which side is checked; KEYS and the other arguments, per pair:
--   both    the tenant's grants hash, then the instance's subscribers hash; ARGV the grants
--           field (`<Model>:<id>`), the tenant id, the start of the grant the reader follows
--           (popoto's layout: both sides in one call)
--   subs    the instance's subscribers hash; ARGV the tenant id
--   grants  the tenant's grants hash; ARGV the grants field, the start
-- Reply: one character per pair: the access ('r' | 'w') the side(s) checked hold for the grant
-- (the grants hash with that very start: a grant made anew has another; both sides agreeing),
-- else '-'.
local side = ARGV[1]
local out = {}
local function granted(gkey, field, start)
  local g = redis.call('HGET', gkey, field)
  if not g then return nil end
  local access, s = string.match(g, '^([rw]):(%d+%-%d+)$')
  if access and s == start then return access end
  return nil
end
local function subscribed(skey, tenant)
  local a = redis.call('HGET', skey, tenant)
  if a == 'r' or a == 'w' then return a end
  return nil
end
if side == 'both' then
  for p = 1, #KEYS / 2 do
    local a = granted(KEYS[2 * p - 1], ARGV[3 * p - 1], ARGV[3 * p + 1])
    if a and subscribed(KEYS[2 * p], ARGV[3 * p]) ~= a then a = nil end
    out[p] = a or '-'
  end
elseif side == 'subs' then
  for p = 1, #KEYS do out[p] = subscribed(KEYS[p], ARGV[p + 1]) or '-' end
elseif side == 'grants' then
  for p = 1, #KEYS do out[p] = granted(KEYS[p], ARGV[2 * p], ARGV[2 * p + 1]) or '-' end
else
  return redis.error_reply('popoto: unknown side ' .. tostring(side))
end
return table.concat(out)
