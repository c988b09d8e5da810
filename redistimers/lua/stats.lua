-- Counts of one topic, by the server's clock.
-- KEYS: due, lease, dead
-- Returns {now ms, timers pending (leased ones too), due now, leased, dead,
--          score of the earliest timer ('' if none)}; times as decimal strings.
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {
  string.format('%.3f', now),
  redis.call('ZCARD', KEYS[1]),
  redis.call('ZCOUNT', KEYS[1], '-inf', now),
  redis.call('HLEN', KEYS[2]),
  redis.call('ZCARD', KEYS[3]),
  first[2] or '',
}
