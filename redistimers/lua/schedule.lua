-- Schedule (or replace) timers of one topic.
-- KEYS: due, body, lease, attempts, dead, dead_body
-- ARGV: wake channel; the timers as one string: records separated by \30 (ASCII
--   record separator), each record's fields by \31 (unit separator):
--   id, mode ("at" | "in"), milliseconds, envelope; "1" to return the due times.
--   "at": due at that epoch millisecond; "in": due that many ms after the server's now.
--   Milliseconds may have a fraction: scores keep microseconds, so a timer due "in 0"
--   is due at once and none is ever due before its time. (One string rather than four
--   arguments per timer: the client packs a bulk of 1,000 timers in one piece.)
-- A periodic timer's envelope may begin with '{"a":null,': its grid's anchor, which is
-- then set to the due time computed here (only the script knows it for "in").
-- A replaced timer starts fresh: its lease (so an old handler's ack is stale), its
-- attempt count and any dead letter of that id are cleared. Publishes a wake-up when
-- one of them became the earliest.
-- Returns {1 if a wake-up was published else 0, the due ms of the timers joined by ','
-- (or '' unless asked for: bulk writes skip formatting them), 1 if the topic had no
-- pending timer before else 0 (the caller then adds it to the set of topics), the
-- server's now in ms (or '' unless the due times were asked for)}.
local want_due = ARGV[3] == '1'
local was_empty = 1 - redis.call('EXISTS', KEYS[1])
local t = redis.call('TIME')
local now_ms = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local zargs, bodies, ids, dues = {}, {}, {}, {}
local data, pos, n = ARGV[2], 1, 0
local size = #data
while pos <= size do
  local stop = string.find(data, '\30', pos, true) or (size + 1)
  local f1 = string.find(data, '\31', pos, true)
  -- The mode is two letters, so the milliseconds start 4 bytes after the id's end.
  local f3 = string.find(data, '\31', f1 + 4, true)
  local id = string.sub(data, pos, f1 - 1)
  local due = tonumber(string.sub(data, f1 + 4, f3 - 1))
  if string.byte(data, f1 + 1) == 105 then due = now_ms + due end -- 'i': "in"
  local envelope = string.sub(data, f3 + 1, stop - 1)
  if string.byte(envelope, 3) == 97 and string.sub(envelope, 1, 10) == '{"a":null,' then
    envelope = '{"a":' .. string.format('%.3f', due) .. ',' .. string.sub(envelope, 11)
  end
  n = n + 1
  zargs[2 * n - 1] = due
  zargs[2 * n] = id
  bodies[2 * n - 1] = id
  bodies[2 * n] = envelope
  ids[n] = id
  if want_due then dues[n] = string.format('%.3f', due) end
  pos = stop + 1
end
redis.call('ZADD', KEYS[1], unpack(zargs))
redis.call('HSET', KEYS[2], unpack(bodies))
redis.call('HDEL', KEYS[3], unpack(ids))
redis.call('HDEL', KEYS[4], unpack(ids))
if redis.call('ZREM', KEYS[5], unpack(ids)) > 0 then
  redis.call('HDEL', KEYS[6], unpack(ids))
end
local now_text = want_due and string.format('%.3f', now_ms) or ''
local first = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
for i = 1, #ids do
  if ids[i] == first then
    redis.call('PUBLISH', ARGV[1], '1')
    return {1, table.concat(dues, ','), was_empty, now_text}
  end
end
return {0, table.concat(dues, ','), was_empty, now_text}
