-- Settle delivered timers, fenced: only where the lease still holds the caller's token.
-- KEYS: due, body, lease, attempts
-- ARGV: wake channel, then the timers as one string: records separated by \30, fields by
--       \31: id, token, next due ms ('' to remove the timer). (One string rather than
--       three arguments per timer: packing arguments is a worker's largest cost per ack.)
-- A timer without a next due time is removed; a periodic one is moved to its next
-- occurrence with a fresh attempt count (a wake-up is published if one became the
-- earliest). A timer re-set or cancelled while its handler ran no longer holds that
-- token, so its new version survives. Every write that may need memory comes after a
-- delete, so that acknowledging goes on in a full Redis (Redis refuses only a script's
-- first write while over maxmemory). Returns the ids whose token was stale.
local ids, tokens, nexts, done, again, zargs, stale = {}, {}, {}, {}, {}, {}, {}
local data, pos = ARGV[2], 1
while pos <= #data do
  local stop = string.find(data, '\30', pos, true) or (#data + 1)
  local f1 = string.find(data, '\31', pos, true)
  local f2 = string.find(data, '\31', f1 + 1, true)
  ids[#ids + 1] = string.sub(data, pos, f1 - 1)
  tokens[#tokens + 1] = string.sub(data, f1 + 1, f2 - 1)
  nexts[#nexts + 1] = string.sub(data, f2 + 1, stop - 1)
  pos = stop + 1
end
local leases = redis.call('HMGET', KEYS[3], unpack(ids))
for i = 1, #ids do
  if leases[i] ~= tokens[i] then
    stale[#stale + 1] = ids[i]
  elseif nexts[i] == '' then
    done[#done + 1] = ids[i]
  else
    again[#again + 1] = ids[i]
    zargs[#zargs + 1] = tonumber(nexts[i])
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
  redis.call('HDEL', KEYS[3], unpack(again))
  redis.call('HDEL', KEYS[4], unpack(again))
  redis.call('ZADD', KEYS[1], unpack(zargs))
  local first = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  for i = 1, #again do
    if again[i] == first then
      redis.call('PUBLISH', ARGV[1], '1')
      break
    end
  end
end
return stale
