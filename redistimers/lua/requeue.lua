-- Bring dead-lettered timers back: due now, attempts reset.
-- KEYS: due, body, lease, attempts, dead, dead_body
-- ARGV: wake channel, most to requeue, then the ids ('' or none: the oldest dead letters)
-- A dead letter whose id names a live timer again is dropped (the live one is newer).
-- Publishes a wake-up when one became the earliest. Returns how many came back.
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then ids = redis.call('ZRANGE', KEYS[5], 0, tonumber(ARGV[2]) - 1) end
local back = 0
for i = 1, #ids do
  local id = ids[i]
  local record = redis.call('HGET', KEYS[6], id)
  if record and redis.call('HEXISTS', KEYS[2], id) == 0 then
    redis.call('ZADD', KEYS[1], now, id)
    redis.call('HSET', KEYS[2], id, cjson.decode(record)['envelope'])
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    back = back + 1
  end
  redis.call('ZREM', KEYS[5], id)
  redis.call('HDEL', KEYS[6], id)
end
if back > 0 then redis.call('PUBLISH', ARGV[1], '1') end
return back
