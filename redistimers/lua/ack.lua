-- Settle delivered timers, fenced: only where the lease still holds the caller's token.
-- KEYS: due, body, lease, attempts
-- ARGV: wake channel, then per timer: id, token, next due ms ('' to remove the timer)
-- A timer without a next due time is removed; a periodic one is moved to its next
-- occurrence with a fresh attempt count (a wake-up is published if one became the
-- earliest). A timer re-set or cancelled while its handler ran no longer holds that
-- token, so its new version survives. Returns the ids whose token was stale.
local ids, done, again, zargs, stale = {}, {}, {}, {}, {}
local n = (#ARGV - 1) / 3
for i = 1, n do ids[i] = ARGV[3 * i - 1] end
local leases = redis.call('HMGET', KEYS[3], unpack(ids))
for i = 1, n do
  if leases[i] ~= ARGV[3 * i] then
    stale[#stale + 1] = ids[i]
  elseif ARGV[3 * i + 1] == '' then
    done[#done + 1] = ids[i]
  else
    again[#again + 1] = ids[i]
    zargs[#zargs + 1] = tonumber(ARGV[3 * i + 1])
    zargs[#zargs + 1] = ids[i]
  end
end
if #done > 0 then
  redis.call('ZREM', KEYS[1], unpack(done))
  redis.call('HDEL', KEYS[2], unpack(done))
  redis.call('HDEL', KEYS[3], unpack(done))
  redis.call('HDEL', KEYS[4], unpack(done))
end
if #again > 0 then
  redis.call('ZADD', KEYS[1], unpack(zargs))
  redis.call('HDEL', KEYS[3], unpack(again))
  redis.call('HDEL', KEYS[4], unpack(again))
  local first = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  for i = 1, #again do
    if again[i] == first then
      redis.call('PUBLISH', ARGV[1], '1')
      break
    end
  end
end
return stale
