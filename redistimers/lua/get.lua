-- One timer as stored, with the server's now; read-only, so it answers in a full Redis
-- (a MULTI does not: Redis refuses to queue commands while over maxmemory).
-- KEYS: due, body, lease, attempts
-- ARGV: id
-- Returns {now ms, score ('' if none), envelope (false if none), 1 if leased else 0,
--          attempts}.
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local id = ARGV[1]
return {
  string.format('%.3f', now),
  redis.call('ZSCORE', KEYS[1], id) or '',
  redis.call('HGET', KEYS[2], id),
  redis.call('HEXISTS', KEYS[3], id),
  redis.call('HGET', KEYS[4], id) or '0',
}
