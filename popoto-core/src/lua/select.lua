-- popoto-rs: candidate keys of a query whose filters combine index reads with AND / OR / NOT,
-- computed on the server (one call, read-only). The reply is the intersection of the top-level
-- nodes; the caller still verifies every member against its scope (verify.rs).
-- KEYS: the index keys read (sets and sorted sets).
-- ARGV[1]: the top-level node to iterate, in its order (1-based), or 0 for the smallest.
-- ARGV[2]: number of top-level nodes.
-- ARGV[3..]: the nodes, in postfix order:
--   S k            members of set KEYS[k]
--   U n k1..kn     union of n sets
--   R k min max    members of sorted set KEYS[k] with a score in [min, max] (ZRANGEBYSCORE syntax)
--   L n m1..mn     a literal list (members found on the client, e.g. by an escaped SSCAN)
--   A n / O n      AND / OR of the last n nodes
--   N              NOT: the node below the last one (the scope's own set) minus the last one
-- A member is tested lazily (SISMEMBER, ZSCORE) when a smaller node drives an intersection, so
-- the cost follows the smallest operand, not the largest.

local function bound(s, low)
  local excl = false
  if string.sub(s, 1, 1) == '(' then excl = true; s = string.sub(s, 2) end
  local v
  if s == '-inf' then v = -math.huge
  elseif s == '+inf' or s == 'inf' then v = math.huge
  else v = tonumber(s) end
  if low then
    if excl then return function(x) return x > v end end
    return function(x) return x >= v end
  end
  if excl then return function(x) return x < v end end
  return function(x) return x <= v end
end

local function score(s)
  if s == 'inf' or s == '+inf' then return math.huge end
  if s == '-inf' then return -math.huge end
  return tonumber(s)
end

local function memo(node)
  if node.cached == nil then node.cached = node.fetch() end
  return node.cached
end

local function set_node(k)
  return {
    card = function() return redis.call('SCARD', k) end,
    fetch = function() return redis.call('SMEMBERS', k) end,
    has = function(m) return redis.call('SISMEMBER', k, m) == 1 end,
  }
end

local function union_node(ks)
  return {
    card = function()
      local n = 0
      for _, k in ipairs(ks) do n = n + redis.call('SCARD', k) end
      return n
    end,
    fetch = function()
      if #ks == 0 then return {} end
      return redis.call('SUNION', unpack(ks))
    end,
    has = function(m)
      for _, k in ipairs(ks) do
        if redis.call('SISMEMBER', k, m) == 1 then return true end
      end
      return false
    end,
  }
end

local function range_node(k, min, max)
  local lo, hi = bound(min, true), bound(max, false)
  return {
    card = function() return redis.call('ZCOUNT', k, min, max) end,
    fetch = function() return redis.call('ZRANGEBYSCORE', k, min, max) end,
    has = function(m)
      local s = redis.call('ZSCORE', k, m)
      if not s then return false end
      local x = score(s)
      return lo(x) and hi(x)
    end,
  }
end

local function list_node(items)
  local index = {}
  for _, m in ipairs(items) do index[m] = true end
  return {
    card = function() return #items end,
    fetch = function() return items end,
    has = function(m) return index[m] == true end,
  }
end

-- The members of `driver` that every node of `others` has, in `driver`'s order.
local function intersect(driver, others)
  local out = {}
  for _, m in ipairs(memo(driver)) do
    local keep = true
    for _, o in ipairs(others) do
      if not o.has(m) then keep = false; break end
    end
    if keep then out[#out + 1] = m end
  end
  return out
end

local function smallest(nodes)
  local best, best_card = 1, nil
  for i, n in ipairs(nodes) do
    local c = n.card()
    if best_card == nil or c < best_card then best, best_card = i, c end
  end
  return best
end

local function split(nodes, d)
  local others = {}
  for i, n in ipairs(nodes) do
    if i ~= d then others[#others + 1] = n end
  end
  return nodes[d], others
end

local function and_node(nodes)
  return {
    card = function()
      local c = nil
      for _, n in ipairs(nodes) do
        local x = n.card()
        if c == nil or x < c then c = x end
      end
      return c or 0
    end,
    fetch = function()
      if #nodes == 0 then return {} end
      local driver, others = split(nodes, smallest(nodes))
      return intersect(driver, others)
    end,
    has = function(m)
      for _, n in ipairs(nodes) do
        if not n.has(m) then return false end
      end
      return true
    end,
  }
end

local function or_node(nodes)
  return {
    card = function()
      local c = 0
      for _, n in ipairs(nodes) do c = c + n.card() end
      return c
    end,
    fetch = function()
      local out, seen = {}, {}
      for _, n in ipairs(nodes) do
        for _, m in ipairs(memo(n)) do
          if not seen[m] then seen[m] = true; out[#out + 1] = m end
        end
      end
      return out
    end,
    has = function(m)
      for _, n in ipairs(nodes) do
        if n.has(m) then return true end
      end
      return false
    end,
  }
end

local function not_node(universe, child)
  return {
    card = function() return universe.card() end,
    fetch = function() return intersect(universe, { { has = function(m) return not child.has(m) end } }) end,
    has = function(m) return universe.has(m) and not child.has(m) end,
  }
end

local stack = {}
local function pop(n)
  local out = {}
  for i = #stack - n + 1, #stack do out[#out + 1] = stack[i] end
  for _ = 1, n do stack[#stack] = nil end
  return out
end

local i = 3
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'S' then
    stack[#stack + 1] = set_node(KEYS[tonumber(ARGV[i + 1])])
    i = i + 2
  elseif op == 'U' then
    local n, ks = tonumber(ARGV[i + 1]), {}
    for j = 1, n do ks[j] = KEYS[tonumber(ARGV[i + 1 + j])] end
    stack[#stack + 1] = union_node(ks)
    i = i + 2 + n
  elseif op == 'R' then
    stack[#stack + 1] = range_node(KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'L' then
    local n, items = tonumber(ARGV[i + 1]), {}
    for j = 1, n do items[j] = ARGV[i + 1 + j] end
    stack[#stack + 1] = list_node(items)
    i = i + 2 + n
  elseif op == 'A' or op == 'O' then
    -- Pop first: `stack[#stack + 1] = f(pop(..))` may take the index before the pop.
    local children = pop(tonumber(ARGV[i + 1]))
    local node
    if op == 'A' then node = and_node(children) else node = or_node(children) end
    stack[#stack + 1] = node
    i = i + 2
  elseif op == 'N' then
    local pair = pop(2)
    local node = not_node(pair[1], pair[2])
    stack[#stack + 1] = node
    i = i + 1
  else
    return redis.error_reply('select.lua: unknown op ' .. tostring(op))
  end
end

local top = tonumber(ARGV[2])
if #stack ~= top or top == 0 then
  return redis.error_reply('select.lua: malformed program')
end
local d = tonumber(ARGV[1])
if d == 0 then
  if top == 1 then d = 1 else d = smallest(stack) end
end
local driver, others = split(stack, d)
return intersect(driver, others)
