-- Move a pending timer to a new due time, keeping its payload, headers and attempts.
-- KEYS: due, body, lease, attempts
-- ARGV: wake channel, id, mode ("at" | "in"), milliseconds
-- Returns {status, now ms, score, envelope, attempts}: status 1 moved (score is the new
-- due time), -1 a handler holds it now (it is not moved under its running handler; score
-- is its lease's expiry), 0 no such timer (and nothing else).
local t = redis.call('TIME')
local now_ms = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local id = ARGV[2]
local envelope = redis.call('HGET', KEYS[2], id)
if not envelope then return {0} end
local status = 1
if redis.call('HEXISTS', KEYS[3], id) == 1 then
  status = -1
else
  local due
  if ARGV[3] == 'in' then due = now_ms + tonumber(ARGV[4]) else due = tonumber(ARGV[4]) end
  redis.call('ZADD', KEYS[1], due, id)
  if redis.call('ZRANGE', KEYS[1], 0, 0)[1] == id then redis.call('PUBLISH', ARGV[1], '1') end
end
return {
  status,
  string.format('%.3f', now_ms),
  redis.call('ZSCORE', KEYS[1], id) or '',
  envelope,
  redis.call('HGET', KEYS[4], id) or '0',
}
