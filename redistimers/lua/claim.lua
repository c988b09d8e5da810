-- Claim up to `limit` due timers of one topic, by the server's clock.
-- KEYS: due, body, lease, attempts, seq
-- ARGV: lease ms, limit
-- Each claimed timer gets a fresh fencing token, stays in `due` scored at its lease's
-- expiry (so it comes back by itself if its worker dies), and counts one more attempt.
-- A due id without a body is a leftover and is removed.
-- Returns {server now ms ('' for an empty topic), score of the earliest timer left ('' if
--          none), then per timer one string: token, attempt, due ms, the id's length in
--          bytes, each followed by \31, then the id and the envelope}; times are ms since
--          the epoch as decimal strings with microseconds. (One string per timer rather
--          than five: the client parses replies element by element. The id is counted,
--          not delimited, so any id and any envelope come back intact.)
-- An empty topic costs one command besides the script itself: idle workers that check
-- many topics now and then keep Redis's load near nothing.
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #head == 0 then return {'', ''} end
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local limit = tonumber(ARGV[2])
local out = {string.format('%.3f', now), ''}
if limit > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  local n = #due / 2
  if n > 0 then
    local ids = {}
    for i = 1, n do ids[i] = due[2 * i - 1] end
    local bodies = redis.call('HMGET', KEYS[2], unpack(ids))
    local counts = redis.call('HMGET', KEYS[4], unpack(ids))
    local base = redis.call('INCRBY', KEYS[5], n) - n
    local expiry = now + tonumber(ARGV[1])
    local zargs, leases, attempts, orphans = {}, {}, {}, {}
    for i = 1, n do
      local id = ids[i]
      if bodies[i] then
        local token = tostring(base + i)
        local attempt = (tonumber(counts[i]) or 0) + 1
        zargs[#zargs + 1] = expiry
        zargs[#zargs + 1] = id
        leases[#leases + 1] = id
        leases[#leases + 1] = token
        attempts[#attempts + 1] = id
        attempts[#attempts + 1] = attempt
        out[#out + 1] = token .. '\31' .. attempt .. '\31' .. due[2 * i] .. '\31' .. #id
          .. '\31' .. id .. bodies[i]
      else
        orphans[#orphans + 1] = id
      end
    end
    if #zargs > 0 then
      redis.call('ZADD', KEYS[1], unpack(zargs))
      redis.call('HSET', KEYS[3], unpack(leases))
      redis.call('HSET', KEYS[4], unpack(attempts))
    end
    if #orphans > 0 then
      redis.call('ZREM', KEYS[1], unpack(orphans))
      redis.call('HDEL', KEYS[3], unpack(orphans))
      redis.call('HDEL', KEYS[4], unpack(orphans))
    end
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then out[2] = first[2] end
return out
