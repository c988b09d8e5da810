-- Remove every pending timer of one topic (dead letters are kept: they have their own
-- purge). Handlers running now find their outcome stale. UNLINK frees memory in the
-- background, so a large topic does not stall Redis.
-- KEYS: due, body, lease, attempts
-- Returns how many timers were removed.
local n = redis.call('ZCARD', KEYS[1])
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return n
