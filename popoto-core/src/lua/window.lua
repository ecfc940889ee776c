-- popoto-rs: the next window of a sorted set after a cursor position (score, member), for
-- cursor pages that survive inserts and deletes between pages: the position is found again
-- by score and member every time (ranks by ZCOUNT, ties by a binary search over members),
-- never kept as an offset. Read-only; O(log n + window).
-- KEYS[1]: the sorted set (the query's own partition).
-- ARGV[1], ARGV[2]: min and max score (ZRANGEBYSCORE syntax: -inf, +inf, (x, x).
-- ARGV[3]: 'a' ascending or 'd' descending (ties by member, bytewise, either way).
-- ARGV[4]: '1' with a cursor, '0' from the start; ARGV[5]: cursor score; ARGV[6]: cursor member.
-- ARGV[7]: window size.
-- Reply: a flat list member1, score1, member2, score2, ... in page order.
local z = KEYS[1]
local min, max, dir = ARGV[1], ARGV[2], ARGV[3]
local has_cursor = ARGV[4] == '1'
local cs, cm = ARGV[5], ARGV[6]
local n = tonumber(ARGV[7])

-- Bytewise a < b (Redis orders equal scores by memcmp; Lua's < follows the locale).
local function lt(a, b)
  local la, lb = #a, #b
  for i = 1, math.min(la, lb) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return la < lb
end

local function excl(s)
  if string.sub(s, 1, 1) == '(' then return string.sub(s, 2) end
  return '(' .. s
end

-- Number of members whose score is below bound `b` (a ZRANGEBYSCORE min bound).
local function below(b)
  if b == '-inf' then return 0 end
  return redis.call('ZCOUNT', z, '-inf', excl(b))
end

-- Number of members whose score is at most bound `b` (a ZRANGEBYSCORE max bound).
local function upto(b)
  if b == '+inf' then return redis.call('ZCARD', z) end
  return redis.call('ZCOUNT', z, '-inf', b)
end

-- Number of members before the cursor position, counting a member equal to the cursor's
-- when `inclusive`: members with a lower score plus ties up to the cursor member.
local function position(inclusive)
  local a = redis.call('ZCOUNT', z, '-inf', '(' .. cs)
  local t = redis.call('ZCOUNT', z, cs, cs)
  local lo, hi = a, a + t
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local m = redis.call('ZRANGE', z, mid, mid)[1]
    local before
    if inclusive then before = not lt(cm, m) else before = lt(m, cm) end
    if before then lo = mid + 1 else hi = mid end
  end
  return lo
end

local out = {}
if dir == 'a' then
  local start = below(min)
  if has_cursor then start = math.max(start, position(true)) end
  local stop = upto(max)
  local last = math.min(stop, start + n) - 1
  if last >= start then
    out = redis.call('ZRANGE', z, start, last, 'WITHSCORES')
  end
else
  local stop = upto(max)
  if has_cursor then stop = math.min(stop, position(false)) end
  local start = math.max(below(min), stop - n)
  if stop - 1 >= start then
    local items = redis.call('ZRANGE', z, start, stop - 1, 'WITHSCORES')
    for i = #items - 1, 1, -2 do
      out[#out + 1] = items[i]
      out[#out + 1] = items[i + 1]
    end
  end
end
return out
