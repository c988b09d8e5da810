-- A page of one topic's timers in due order, after a cursor (score, id).
-- KEYS: due, body, lease, attempts
-- ARGV: cursor score ('-inf' for the first page), cursor id ('' for the first page),
--       latest due score to include ('+inf' for all), page size
-- Timers with the cursor's score and an id up to the cursor's are skipped, so a page
-- boundary inside a run of equal scores stays exact while timers come and go. Members
-- are read in chunks: a huge topic is never loaded whole.
-- Returns {server now ms, then per timer: id, score, 1 if leased else 0, attempts, body}.
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local out = {string.format('%.3f', now)}
local after_score, after_id = ARGV[1], ARGV[2]
local limit = tonumber(ARGV[4])
local chunk = math.max(limit, 100)
local offset, found = 0, 0
while found < limit do
  local entries = redis.call('ZRANGEBYSCORE', KEYS[1], after_score, ARGV[3],
                             'WITHSCORES', 'LIMIT', offset, chunk)
  if #entries == 0 then break end
  for i = 1, #entries, 2 do
    local id, score = entries[i], entries[i + 1]
    local skip = after_id ~= '' and tonumber(score) == tonumber(after_score) and id <= after_id
    if not skip and found < limit then
      local body = redis.call('HGET', KEYS[2], id)
      if body then
        found = found + 1
        out[#out + 1] = id
        out[#out + 1] = score
        out[#out + 1] = redis.call('HEXISTS', KEYS[3], id)
        out[#out + 1] = redis.call('HGET', KEYS[4], id) or '0'
        out[#out + 1] = body
      end
    end
  end
  offset = offset + chunk
end
return out
