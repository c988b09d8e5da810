-- Remove a timer everywhere it is kept (a running handler's later ack is then stale).
-- KEYS: due, body, lease, attempts
-- ARGV: id
-- Returns 1 if the timer existed, else 0.
local existed = redis.call('ZREM', KEYS[1], ARGV[1])
existed = existed + redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if existed > 0 then return 1 end
return 0
