-- popoto-rs: create instances, each all or nothing, with the fewest server commands.
-- One instance: KEYS[1] is the instance key, KEYS[2..] its index keys, one per index entry.
-- ARGV[1]: 'F' (the key holds a uuid4 generated for this create: it cannot exist, so no EXISTS),
-- 'P' (the same, with only 'S', 'Z' and 'H' entries: create_fresh.lua, before the library, ran
-- it) or 'C'; ARGV[2]: nf; then nf (field, value) pairs; then one (op, arg) pair per index key:
-- 'S' SADD the instance key, 'U' the same into a unique value set (arg: the field tag), 'V' the
-- same into a unique value set shared by tenants (arg: '<tag> <p>': only members whose key has
-- the instance key's segment at position p conflict), 'Z' ZADD it with score arg, 'H' HSETNX it
-- with value arg (a confidence entry), 'X' ZADD it into the expiry set with the expiry time
-- (arg: 'A<ms>' absolute, 'R<ms>' after the server's TIME) and, once everything is written,
-- PEXPIREAT the hash at that time.
-- Several instances (concurrent creates sent together): ARGV[1] is '*', then per instance its
-- key count, its argument count and its arguments as above, or '=' and the compact form below;
-- KEYS holds every instance's keys in the same order. The reply is one reply per instance, in
-- order (an instance written: its HSET reply alone); each instance is checked and
-- written (or refused) before the next, so a later one sees an earlier one's key and values.
-- Checks first: the key is absent, no unique value set holds another instance. Then the hash and
-- the index writes; if one fails (another program left a wrong type on an index key, or the
-- server is out of memory), everything this instance wrote is undone before replying, so the
-- instance and its index entries are all there or all gone.
-- Reply: the HSET reply (an integer: a table reply costs the server more than the HSET itself),
-- {'exists', key}, {'unique', tag, member}, {'wrongtype', key, type} or the failing command's
-- error.

-- The unique check of a 'U' or 'V' entry of `key` into `set` (lib.lua): nil, or the refusal.
local function unique(key, op, set, arg)
  if op == 'V' then
    local tag, p = string.match(arg, '^(%d+) (%d+)$')
    return unique_refusal(set, tag, key, nil, tonumber(p))
  end
  return unique_refusal(set, arg, key, nil, 0)
end

-- One instance. Written inline (no function to create per call) and without tables unless a
-- failure needs them: what this call adds is KEYS[2..done] while every entry is new; after the
-- first entry that was already there, `added` lists the later ones it adds.
if ARGV[1] ~= '*' then
  local key, nk = KEYS[1], #KEYS
  if ARGV[1] == 'C' and redis.call('EXISTS', key) == 1 then return {'exists', key} end
  local last = 2 + 2 * tonumber(ARGV[2])
  -- The (op, arg) pair of KEYS[i] is ARGV[base + 2 * i], ARGV[base + 2 * i + 1].
  local base = last - 3
  for i = 2, nk do
    local op = ARGV[base + 2 * i]
    if op == 'U' or op == 'V' then
      local refused = unique(key, op, KEYS[i], ARGV[base + 2 * i + 1])
      if refused then return refused end
    end
  end
  local written = redis.pcall('HSET', key, unpack(ARGV, 3, last))
  if type(written) == 'table' and written.err then return written end
  -- Only entries this call added are undone on a failure (an entry left by an earlier writer
  -- stays), and a zset member it rescored gets its old score back (read only then).
  local done, added, rescored, expire = 1, nil, nil, nil
  for i = 2, nk do
    local op, k, arg = ARGV[base + 2 * i], KEYS[i], ARGV[base + 2 * i + 1]
    local r
    if op == 'X' then
      expire = expiry_at(arg)
      op, arg = 'Z', expire
    end
    if op == 'Z' then
      r = redis.pcall('ZADD', k, 'NX', arg, key)
      if r == 0 then
        rescored = rescored or {}
        rescored[#rescored + 1] = {k, redis.call('ZSCORE', k, key)}
        r = redis.pcall('ZADD', k, arg, key)
      end
    elseif op == 'H' then r = redis.pcall('HSETNX', k, key, arg)
    else r = redis.pcall('SADD', k, key) end
    if type(r) == 'table' and r.err then
      redis.call('DEL', key)
      local undo = {}
      for u = 2, done do undo[#undo + 1] = u end
      for _, u in ipairs(added or {}) do undo[#undo + 1] = u end
      for j = #undo, 1, -1 do
        local u = undo[j]
        local uop = ARGV[base + 2 * u]
        if uop == 'Z' or uop == 'X' then redis.call('ZREM', KEYS[u], key)
        elseif uop == 'H' then redis.call('HDEL', KEYS[u], key)
        else redis.call('SREM', KEYS[u], key) end
      end
      for j = #(rescored or {}), 1, -1 do
        redis.call('ZADD', rescored[j][1], rescored[j][2], key)
      end
      local kind = (op == 'Z' and 'zset') or (op == 'H' and 'hash') or 'set'
      return typed(k, kind) or r
    end
    if added then
      if r == 1 then added[#added + 1] = i end
    elseif r == 1 then
      done = i
    else
      added = {}
    end
  end
  if expire then redis.call('PEXPIREAT', key, expire) end
  return written
end

-- Several instances. Each index key's type is read once; an instance naming a key of the wrong
-- type is refused before it writes anything. Nothing after an instance's HSET can then fail
-- (types are right, and a script that has written is not refused for memory), so the set and
-- zset entries of every instance are added at the end, one SADD or ZADD per index key, and
-- nothing needs undoing. Unique value sets and confidence entries are written at once, so a
-- later instance sees an earlier one's values; so is an expiry, with the hash's PEXPIREAT.
-- A compact instance ('=') has the flag, field count, index keys and ops of the last full one:
-- it sends only its own key (in KEYS), its hash fields and the args of its 'Z' and 'X' entries.
local kinds = {S = 'set', U = 'set', V = 'set', Z = 'zset', X = 'zset', H = 'hash'}
local types, sets, zsets, order = {}, {}, {}, {}
local out, k0, a, n = {}, 0, 2, #ARGV
-- The last full instance: its KEYS offset, key count, the ARGV base of its (op, arg) pairs,
-- the position among its varying ('Z', 'X') args of each entry that has one, and whether its
-- keys' types were right (then they stay right: only this call writes them meanwhile).
local pk0, pnk, pbase, pvary, ptyped, puniq, pflag, pnf
-- The instance at hand (assigned per instance, so that `arg` is built once per call).
local key, nk, kbase, base, flag, f0, last, vary
-- Entry i's arg: its own when compact and varying, else the full instance's.
local function arg(i)
  local v = vary and pvary[i]
  if v then return ARGV[vary + v] end
  return ARGV[base + 2 * i + 1]
end
while a <= n do
  key = KEYS[k0 + 1]
  if ARGV[a] == '=' then
    nk, kbase, base, flag = pnk, pk0, pbase, pflag
    f0, last = a + 1, a + 2 * pnf
    vary = last
    k0 = k0 + 1
    a = last + 1 + pvary.n
  else
    nk = tonumber(ARGV[a])
    local a0 = a + 1
    flag, f0, kbase, vary = ARGV[a0 + 1], a0 + 3, k0, nil
    pflag, pnf = flag, tonumber(ARGV[a0 + 2])
    last = a0 + 2 + 2 * pnf
    base = last - 3
    pvary, puniq = {n = 0}, false
    for i = 2, nk do
      local op = ARGV[base + 2 * i]
      if op == 'Z' or op == 'X' then
        pvary.n = pvary.n + 1
        pvary[i] = pvary.n
      elseif op == 'U' or op == 'V' then
        puniq = true
      end
    end
    pk0, pnk, pbase = k0, nk, base
    k0 = k0 + nk
    a = a + 2 + tonumber(ARGV[a + 1])
  end
  local reply
  if not (vary and ptyped) then
    for i = 2, nk do
      local k, kind = KEYS[kbase + i], kinds[ARGV[base + 2 * i]]
      local t = types[k]
      if t == nil then
        t = redis.call('TYPE', k).ok
        types[k] = t
      end
      if t ~= 'none' and t ~= kind then
        reply = {'wrongtype', k, t}
        break
      end
    end
    if not vary then ptyped = not reply end
  end
  if not reply and flag == 'C' and redis.call('EXISTS', key) == 1 then
    reply = {'exists', key}
  end
  if not reply and puniq then
    for i = 2, nk do
      local op = ARGV[base + 2 * i]
      if op == 'U' or op == 'V' then
        reply = unique(key, op, KEYS[kbase + i], arg(i))
        if reply then break end
      end
    end
  end
  if not reply then
    local written = redis.pcall('HSET', key, unpack(ARGV, f0, last))
    if type(written) == 'table' and written.err then
      reply = written
    else
      for i = 2, nk do
        local op, k = ARGV[base + 2 * i], KEYS[kbase + i]
        if not vary then types[k] = kinds[op] end
        if op == 'U' or op == 'V' then redis.call('SADD', k, key)
        elseif op == 'H' then redis.call('HSETNX', k, key, arg(i))
        elseif op == 'X' then
          local at = expiry_at(arg(i))
          redis.call('ZADD', k, at, key)
          redis.call('PEXPIREAT', key, at)
        else
          local into = (op == 'Z' and zsets) or sets
          local list = into[k]
          if not list then
            list = {}
            into[k] = list
            order[#order + 1] = k
          end
          if op == 'Z' then list[#list + 1] = arg(i) end
          list[#list + 1] = key
        end
      end
      -- An instance written: its HSET's reply alone (a table per instance costs the server).
      reply = written
    end
  end
  out[#out + 1] = reply
end
for _, k in ipairs(order) do
  if sets[k] then redis.call('SADD', k, unpack(sets[k])) end
  if zsets[k] then redis.call('ZADD', k, unpack(zsets[k])) end
end
return out
