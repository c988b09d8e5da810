-- Mark a suspect's delivery as running alone in its worker, fenced by token, before its
-- handler starts: if it never reports back, the next claim sees the mark ('*' at the end
-- of the lease) and knows that this timer's own handler ended its worker, not a
-- neighbour's (claim.lua). Also renews the lease.
-- KEYS: due, lease
-- ARGV: lease ms, id, token
-- Returns the delivery's new token (the old one and '*'), or '' if the lease was lost.
local id, token = ARGV[2], ARGV[3]
local held = redis.call('HGET', KEYS[2], id)
if held == token .. '*' then return held end -- sent again after a timeout: done already
if held ~= token then return '' end
-- The delete comes first so that this goes on in a full Redis (see extend.lua).
redis.call('HDEL', KEYS[2], id)
redis.call('HSET', KEYS[2], id, token .. '*')
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), id)
return token .. '*'
