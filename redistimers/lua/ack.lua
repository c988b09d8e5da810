-- Remove delivered timers, fenced: only where the lease still holds the caller's token.
-- KEYS: due, body, lease, attempts
-- ARGV: per timer: id, token
-- A timer re-set or cancelled while its handler ran no longer holds that token, so its
-- new version survives. Returns the ids whose token was stale.
local ids, done, stale = {}, {}, {}
local n = #ARGV / 2
for i = 1, n do ids[i] = ARGV[2 * i - 1] end
local leases = redis.call('HMGET', KEYS[3], unpack(ids))
for i = 1, n do
  if leases[i] == ARGV[2 * i] then done[#done + 1] = ids[i] else stale[#stale + 1] = ids[i] end
end
if #done > 0 then
  redis.call('ZREM', KEYS[1], unpack(done))
  redis.call('HDEL', KEYS[2], unpack(done))
  redis.call('HDEL', KEYS[3], unpack(done))
  redis.call('HDEL', KEYS[4], unpack(done))
end
return stale
