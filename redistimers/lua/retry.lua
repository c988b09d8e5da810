-- Hand leased timers back to be delivered again after a delay, fenced by token.
-- KEYS: due, lease, attempts
-- ARGV: wake channel, uncount ("1": the delivery never started, so its attempt is not
--       counted, as for a release at shutdown), then per timer: id, token, delay ms
-- Publishes a wake-up when one of them became the earliest. Returns the stale ids.
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local ids, zargs, stale = {}, {}, {}
local n = (#ARGV - 2) / 3
for i = 1, n do ids[i] = ARGV[3 * i] end
local leases = redis.call('HMGET', KEYS[2], unpack(ids))
local moved = {}
for i = 1, n do
  if leases[i] == ARGV[3 * i + 1] then
    zargs[#zargs + 1] = now + tonumber(ARGV[3 * i + 2])
    zargs[#zargs + 1] = ids[i]
    moved[#moved + 1] = ids[i]
  else
    stale[#stale + 1] = ids[i]
  end
end
if #moved > 0 then
  redis.call('ZADD', KEYS[1], unpack(zargs))
  redis.call('HDEL', KEYS[2], unpack(moved))
  if ARGV[2] == '1' then
    for i = 1, #moved do
      if redis.call('HINCRBY', KEYS[3], moved[i], -1) <= 0 then
        redis.call('HDEL', KEYS[3], moved[i])
      end
    end
  end
  local first = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  for i = 1, #moved do
    if moved[i] == first then
      redis.call('PUBLISH', ARGV[1], '1')
      break
    end
  end
end
return stale
