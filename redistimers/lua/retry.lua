-- Hand leased timers back, fenced by token: to be delivered again after a delay, or (a
-- release) due at once with the attempt not counted, for deliveries that never started.
-- KEYS: due, lease, attempts
-- ARGV: wake channel, "1" for a release (else "0"), then per timer: id, token, and for a
--       retry the delay in ms, for a release what the lease keeps ('' to clear it; '!'
--       or '*' to keep a suspect's mark, see claim.lua)
-- The lease is deleted before any write that may need memory, so that this goes on in a
-- full Redis (Redis refuses only a script's first write while over maxmemory).
-- Publishes a wake-up when one of them became the earliest. Returns the stale ids.
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local release = ARGV[2] == '1'
local ids, zargs, stale, moved, marks = {}, {}, {}, {}, {}
local n = (#ARGV - 2) / 3
for i = 1, n do ids[i] = ARGV[3 * i] end
local leases = redis.call('HMGET', KEYS[2], unpack(ids))
for i = 1, n do
  if leases[i] == ARGV[3 * i + 1] then
    local extra = ARGV[3 * i + 2]
    if release then
      zargs[#zargs + 1] = now
      if extra ~= '' then
        marks[#marks + 1] = ids[i]
        marks[#marks + 1] = extra
      end
    else
      zargs[#zargs + 1] = now + tonumber(extra)
    end
    zargs[#zargs + 1] = ids[i]
    moved[#moved + 1] = ids[i]
  else
    stale[#stale + 1] = ids[i]
  end
end
if #moved > 0 then
  redis.call('HDEL', KEYS[2], unpack(moved))
  redis.call('ZADD', KEYS[1], unpack(zargs))
  if #marks > 0 then redis.call('HSET', KEYS[2], unpack(marks)) end
  if release then
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
