-- Move a pending timer to a new due time, keeping its payload, headers and attempts.
-- KEYS: due, body, lease
-- ARGV: wake channel, id, mode ("at" | "in"), milliseconds
-- Returns 1 if moved, 0 if there is no such timer, -1 if a handler holds it now (it is
-- not moved under its running handler).
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then return -1 end
local t = redis.call('TIME')
local now_ms = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local due
if ARGV[3] == 'in' then due = now_ms + tonumber(ARGV[4]) else due = tonumber(ARGV[4]) end
redis.call('ZADD', KEYS[1], due, ARGV[2])
if redis.call('ZRANGE', KEYS[1], 0, 0)[1] == ARGV[2] then redis.call('PUBLISH', ARGV[1], '1') end
return 1
