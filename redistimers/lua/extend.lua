-- Renew the leases of handlers still running, fenced by token.
-- KEYS: due, lease
-- ARGV: lease ms, then per timer: id, token
-- Returns {id, token} of each lease that was lost (re-set, cancelled, or expired and
-- re-claimed); the same id may be running twice, as an old and a new version.
-- A lease must stay renewable in a full Redis: Redis refuses a script's first write that
-- may need memory while its used memory is over maxmemory, but never stops a script that
-- has begun to write, and this delete of a field no timer has (ids are never empty) is
-- such a beginning. (Renewing moves scores; it needs no memory.)
redis.call('HDEL', KEYS[2], '')
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local expiry = now + tonumber(ARGV[1])
local ids, zargs, lost = {}, {}, {}
local n = (#ARGV - 1) / 2
for i = 1, n do ids[i] = ARGV[2 * i] end
local leases = redis.call('HMGET', KEYS[2], unpack(ids))
for i = 1, n do
  if leases[i] == ARGV[2 * i + 1] then
    zargs[#zargs + 1] = expiry
    zargs[#zargs + 1] = ids[i]
  else
    lost[#lost + 1] = ids[i]
    lost[#lost + 1] = ARGV[2 * i + 1]
  end
end
if #zargs > 0 then redis.call('ZADD', KEYS[1], 'XX', unpack(zargs)) end
return lost
