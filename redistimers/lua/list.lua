-- A page of one topic's timers in due order, after a cursor (score, id).
-- KEYS: due, body, lease, attempts
-- ARGV: cursor score ('-inf' for the first page), cursor id ('' for the first page),
--       latest due score to include ('+inf' for all, '(<ms>' for before <ms>), page size,
--       and optionally an id prefix ('' or absent: every id)
-- The page starts right after the cursor's (score, id) in the set's own order (score,
-- then id byte by byte), found by rank in O(log n): straight after the cursor's timer if
-- it is still there with that score, else by a binary search of the run of timers with
-- that score. So a boundary inside a run of equal due times stays exact while timers come
-- and go, and a page costs the same at the start of a million timers as at the end.
-- With an id prefix, timers whose ids do not start with it are walked past (not counted),
-- so a page still holds `limit` matching timers and its cursor is the last one shown; but
-- at most ARGV[6] timers are walked in one call (a script blocks Redis while it runs):
-- past that, the page ends short, with where the walk stopped to go on from.
-- Returns {server now ms, the id and score where a cut-short walk stopped ('' and ''
-- otherwise), then per timer: id, score, 1 if leased else 0, attempts, body}.
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local out = {string.format('%.3f', now), '', ''}
local after_score, after_id = ARGV[1], ARGV[2]
local limit = tonumber(ARGV[4])
local prefix = ARGV[5] or ''
local budget = tonumber(ARGV[6] or '0')
if budget == nil or budget <= 0 then budget = math.huge end
local max_score, max_open = math.huge, false
if ARGV[3] ~= '+inf' then
  if string.sub(ARGV[3], 1, 1) == '(' then
    max_score, max_open = tonumber(string.sub(ARGV[3], 2)), true
  else
    max_score = tonumber(ARGV[3])
  end
end

-- a <= b comparing bytes, as Redis orders members of equal score (Lua's own string
-- comparison follows the server's locale)
local function bytes_le(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a <= #b
end

local start = 0
local last_id, last_score = after_id, after_score
if after_id ~= '' then
  local score = redis.call('ZSCORE', KEYS[1], after_id)
  if score and tonumber(score) == tonumber(after_score) then
    start = redis.call('ZRANK', KEYS[1], after_id) + 1
  else
    local lo = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. after_score)
    local hi = redis.call('ZCOUNT', KEYS[1], '-inf', after_score)
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if bytes_le(redis.call('ZRANGE', KEYS[1], mid, mid)[1], after_id) then
        lo = mid + 1
      else
        hi = mid
      end
    end
    start = lo
  end
end

local found, chunk, done, walked = 0, math.max(limit, 100), false, 0
while not done and found < limit do
  local entries = redis.call('ZRANGE', KEYS[1], start, start + chunk - 1, 'WITHSCORES')
  if #entries == 0 then break end
  for i = 1, #entries, 2 do
    local id, score = entries[i], entries[i + 1]
    local value = tonumber(score)
    if value > max_score or (max_open and value == max_score) then
      done = true
      break
    end
    if walked >= budget then  -- enough for one call: say where to go on from
      out[2], out[3] = last_id, last_score
      done = true
      break
    end
    walked = walked + 1
    last_id, last_score = id, score
    local body = false
    if prefix == '' or string.sub(id, 1, #prefix) == prefix then
      body = redis.call('HGET', KEYS[2], id)
    end
    if body then
      found = found + 1
      out[#out + 1] = id
      out[#out + 1] = score
      out[#out + 1] = redis.call('HEXISTS', KEYS[3], id)
      out[#out + 1] = redis.call('HGET', KEYS[4], id) or '0'
      out[#out + 1] = body
      if found == limit then break end
    end
  end
  start = start + chunk
end
return out
