-- Delete every dead letter of one topic; UNLINK frees the memory in the background. A
-- script rather than a MULTI, so that it works in a full Redis, when it is most needed.
-- KEYS: dead, dead_body
-- Returns how many there were.
local n = redis.call('ZCARD', KEYS[1])
redis.call('UNLINK', KEYS[1], KEYS[2])
return n
