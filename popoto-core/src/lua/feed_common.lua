-- popoto-rs: the change-feed prelude, prepended to every script that appends change events
-- (apply.lua, shared_write.lua). feed_append runs in the caller's script call, so an event is
-- appended exactly when its write is applied: no event without its write, no write without
-- its event, whatever is killed when.

-- Entries a stream keeps when no retention is set on it.
local FEED_MAXLEN = 10000
-- A trim floor older than this (ms) no longer holds trimming back: the consumer groups that
-- set it are presumed dead, and the stream is trimmed by its retention again.
local FEED_STALE_MS = 300000

-- nil if `stream` and `meta` are absent or a stream and a hash, else the check's failure.
local function feed_types(stream, meta)
  return typed(stream, 'stream') or typed(meta, 'hash')
end

-- Appends one event (`fields`, a flat list) to `stream` and trims it; the new entry id.
-- Without consumer groups the stream keeps its retention (`maxlen`, default FEED_MAXLEN, and
-- `maxage` ms); with groups, the last trim's `floor` (nothing a live group still needs is
-- below it), unless that floor is stale.
local function feed_append(stream, meta, fields)
  local id = redis.call('XADD', stream, '*', unpack(fields))
  local cfg = redis.call('HMGET', meta, 'maxlen', 'maxage', 'floor', 'floor_at', 'stale')
  local now = nil
  local floor = cfg[3]
  if floor then
    now = now_ms()
    if now - (tonumber(cfg[4]) or 0) > (tonumber(cfg[5]) or FEED_STALE_MS) then floor = nil end
  end
  if floor then
    if floor ~= '0-0' then redis.call('XTRIM', stream, 'MINID', '~', floor) end
  else
    redis.call('XTRIM', stream, 'MAXLEN', '~', tonumber(cfg[1]) or FEED_MAXLEN)
    local age = tonumber(cfg[2])
    if age then
      now = now or now_ms()
      redis.call('XTRIM', stream, 'MINID', '~', string.format('%.0f-0', now - age))
    end
  end
  return id
end

