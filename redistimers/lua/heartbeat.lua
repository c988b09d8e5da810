-- A live worker's heartbeat: its record, kept for ttl ms, and its id in the index of
-- workers by last heartbeat (ids silent for a day are dropped from it).
-- KEYS: the index of workers, this worker's record
-- ARGV: worker id, record (JSON), ttl ms
-- Returns the server's now, in ms, as a decimal string.
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 86400000)
redis.call('PEXPIRE', KEYS[1], 86400000)
return string.format('%.3f', now)
