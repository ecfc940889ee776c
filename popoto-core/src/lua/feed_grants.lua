-- popoto-rs: the grants a change feed's fan-out hands entries under, checked in one call (a
-- read-only script).
-- KEYS: per pair, the tenant's grants hash, then the shared instance's subscribers hash.
-- ARGV: per pair, the grants hash field (`<Model>:<id>`), the tenant id, and the start of the
-- grant the reader follows.
-- Reply: one character per pair, '1' when the grants hash holds `<access>:<start>` for the
-- field with that very start (a grant made anew has another) and the subscribers hash
-- confirms the access, else '0'.
local out = {}
for p = 1, #KEYS / 2 do
  local ok = '0'
  local g = redis.call('HGET', KEYS[2 * p - 1], ARGV[3 * p - 2])
  if g then
    local access, start = string.match(g, '^([rw]):(%d+%-%d+)$')
    if access and start == ARGV[3 * p]
        and redis.call('HGET', KEYS[2 * p], ARGV[3 * p - 1]) == access then
      ok = '1'
    end
  end
  out[p] = ok
end
return table.concat(out)
