-- Schedule (or replace) timers of one topic.
-- KEYS: due, body, lease, attempts, dead, dead_body
-- ARGV: wake channel, then per timer: id, mode ("at" | "in"), milliseconds, envelope
--   "at": due at that epoch millisecond; "in": due that many ms after the server's now.
--   Milliseconds may have a fraction: scores keep microseconds, so a timer due "in 0"
--   is due at once and none is ever due before its time.
-- A periodic timer's envelope may begin with '{"a":null,': its grid's anchor, which is
-- then set to the due time computed here (only the script knows it for "in").
-- A replaced timer starts fresh: its lease (so an old handler's ack is stale), its
-- attempt count and any dead letter of that id are cleared. Publishes a wake-up when
-- one of them became the earliest.
-- Returns {1 if a wake-up was published else 0, due ms of each timer (as strings)...}.
local t = redis.call('TIME')
local now_ms = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local zargs, bodies, ids = {}, {}, {}
local out = {0}
local n = (#ARGV - 1) / 4
for i = 0, n - 1 do
  local id, mode, ms, envelope = ARGV[2 + 4 * i], ARGV[3 + 4 * i], ARGV[4 + 4 * i], ARGV[5 + 4 * i]
  local due
  if mode == 'in' then due = now_ms + tonumber(ms) else due = tonumber(ms) end
  if string.sub(envelope, 1, 10) == '{"a":null,' then
    envelope = '{"a":' .. string.format('%.3f', due) .. ',' .. string.sub(envelope, 11)
  end
  zargs[#zargs + 1] = due
  zargs[#zargs + 1] = id
  bodies[#bodies + 1] = id
  bodies[#bodies + 1] = envelope
  ids[#ids + 1] = id
  out[#out + 1] = string.format('%.3f', due)
end
redis.call('ZADD', KEYS[1], unpack(zargs))
redis.call('HSET', KEYS[2], unpack(bodies))
redis.call('HDEL', KEYS[3], unpack(ids))
redis.call('HDEL', KEYS[4], unpack(ids))
if redis.call('ZREM', KEYS[5], unpack(ids)) > 0 then
  redis.call('HDEL', KEYS[6], unpack(ids))
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
for i = 1, #ids do
  if ids[i] == first then
    redis.call('PUBLISH', ARGV[1], '1')
    out[1] = 1
    break
  end
end
return out
