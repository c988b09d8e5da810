-- Move leased timers to the dead letters, fenced by token.
-- KEYS: due, body, lease, attempts, dead, dead_body
-- ARGV: per timer: id, token, dead-letter record (JSON built by the caller)
-- Returns the stale ids (those are left alone: a newer version or delivery owns them).
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local ids, stale = {}, {}
local n = #ARGV / 3
for i = 1, n do ids[i] = ARGV[3 * i - 2] end
local leases = redis.call('HMGET', KEYS[3], unpack(ids))
for i = 1, n do
  local id = ids[i]
  if leases[i] == ARGV[3 * i - 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZADD', KEYS[5], now, id)
    redis.call('HSET', KEYS[6], id, ARGV[3 * i])
  else
    stale[#stale + 1] = id
  end
end
return stale
