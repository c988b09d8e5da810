-- Claim up to `limit` due timers of one topic, by the server's clock.
-- KEYS: due, body, lease, attempts, seq, claim record (<ns>:{<topic>}:claim:<claimer>)
-- ARGV: lease ms, limit, request id (unique per claimer), "1" to find out whether Redis
--       is full even when nothing is claimed
-- Each claimed timer gets a fresh fencing token, stays in `due` scored at its lease's
-- expiry (so it comes back by itself if its worker dies), and counts one more attempt.
-- A due id without a body is a leftover and is removed.
--
-- Safe to send twice. What a request claimed is kept under its claimer's record key for
-- the lease's time, and the same request run again (a client that timed out while Redis
-- stalled sends it again, and Redis runs both copies) answers with those timers instead
-- of leasing others that no worker would ever run.
--
-- Goes on in a full Redis. Redis refuses a script's first write that may need memory
-- while its used memory is over maxmemory, but never stops a script that has begun to
-- write; delivering is what frees memory, so when the first write is refused the claim
-- deletes a field no timer has (ids are never empty) and writes on. Its reply says so.
--
-- Returns {server now ms ('' for an empty topic), score of the earliest timer left ('' if
--          none), flags ('R': this request had been run before; 'F': Redis is full, 'M':
--          it is not, when the claim wrote or probed), suspects ('' when none: else, for
--          each timer whose previous delivery never reported back (its lease ran out), its
--          place among the timers below and '!', or '*' when that delivery also ran alone
--          (solo.lua), separated by ','), then per timer one string: token, attempt, due
--          ms, the id's length in bytes, each followed by \31, then the id and the
--          envelope}. Times are ms since the epoch as decimal strings with microseconds.
--          (One string per timer rather than five: the client parses replies element by
--          element. The id is counted, not delimited, so any id and any envelope come back
--          intact.)
-- An empty topic costs one command besides the script itself: idle workers that check
-- many topics now and then keep Redis's load near nothing.
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #head == 0 then return {'', '', '', ''} end
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local out = {string.format('%.3f', now), '', '', ''}
local marks = {}
local request = ARGV[3]
local record = redis.call('GET', KEYS[6])

if record and string.sub(record, 1, #request + 1) == request .. '\30' then
  -- Run before: the timers that request leased, those it still holds.
  out[3] = 'R'
  -- Each entry: id, then the reply's fields (token, attempt, due), then the mark.
  local pos, size = #request + 2, #record
  while pos <= size do
    local stop = string.find(record, '\30', pos, true) or (size + 1)
    local f1 = string.find(record, '\31', pos, true)
    local f2 = string.find(record, '\31', f1 + 1, true)
    local f4 = string.find(record, '\31', string.find(record, '\31', f2 + 1, true) + 1, true)
    local id = string.sub(record, pos, f1 - 1)
    if redis.call('HGET', KEYS[3], id) == string.sub(record, f1 + 1, f2 - 1) then
      local body = redis.call('HGET', KEYS[2], id)
      if body then
        out[#out + 1] = string.sub(record, f1 + 1, f4 - 1) .. '\31' .. #id .. '\31' .. id
          .. body
        if f4 + 1 < stop then
          marks[#marks + 1] = (#out - 4) .. string.sub(record, f4 + 1, stop - 1)
        end
      end
    end
    pos = stop + 1
  end
else
  local wrote = false
  local limit = tonumber(ARGV[2])
  local due = {}
  if limit > 0 then
    due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  end
  local n = #due / 2
  if n > 0 then
    local ids = {}
    for i = 1, n do ids[i] = due[2 * i - 1] end
    local bodies = redis.call('HMGET', KEYS[2], unpack(ids))
    local counts = redis.call('HMGET', KEYS[4], unpack(ids))
    local held = redis.call('HMGET', KEYS[3], unpack(ids))
    local base = redis.pcall('INCRBY', KEYS[5], n)
    out[3] = 'M'
    if type(base) == 'table' then
      if not string.find(base.err or '', 'OOM', 1, true) then return base end
      out[3] = 'F'
      redis.call('HDEL', KEYS[3], '')
      base = redis.call('INCRBY', KEYS[5], n)
    end
    wrote = true
    base = base - n
    local expiry = now + tonumber(ARGV[1])
    local zargs, leases, attempts, orphans, records = {}, {}, {}, {}, {request}
    for i = 1, n do
      local id = ids[i]
      if bodies[i] then
        local token = tostring(base + i)
        local attempt = (tonumber(counts[i]) or 0) + 1
        local mark = ''
        if held[i] then
          if string.sub(held[i], -1) == '*' then mark = '*' else mark = '!' end
          marks[#marks + 1] = (#out - 3) .. mark
        end
        zargs[#zargs + 1] = expiry
        zargs[#zargs + 1] = id
        leases[#leases + 1] = id
        leases[#leases + 1] = token
        attempts[#attempts + 1] = id
        attempts[#attempts + 1] = attempt
        local fields = token .. '\31' .. attempt .. '\31' .. due[2 * i]
        records[#records + 1] = id .. '\31' .. fields .. '\31' .. mark
        out[#out + 1] = fields .. '\31' .. #id .. '\31' .. id .. bodies[i]
      else
        orphans[#orphans + 1] = id
      end
    end
    if #orphans > 0 then
      redis.call('ZREM', KEYS[1], unpack(orphans))
      redis.call('HDEL', KEYS[3], unpack(orphans))
      redis.call('HDEL', KEYS[4], unpack(orphans))
    end
    if #zargs > 0 then
      redis.call('ZADD', KEYS[1], unpack(zargs))
      redis.call('HSET', KEYS[3], unpack(leases))
      redis.call('HSET', KEYS[4], unpack(attempts))
      redis.call('SET', KEYS[6], table.concat(records, '\30'), 'PX', ARGV[1])
    end
  end
  if not wrote and ARGV[4] == '1' then
    -- Rewriting the earliest timer's own score changes nothing, but is refused while
    -- Redis is over maxmemory: how a worker that believes Redis full learns it is not.
    local probe = redis.pcall('ZADD', KEYS[1], 'XX', head[2], head[1])
    out[3] = 'M'
    if type(probe) == 'table' then
      if not string.find(probe.err or '', 'OOM', 1, true) then return probe end
      out[3] = 'F'
    end
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then out[2] = first[2] end
out[4] = table.concat(marks, ',')
return out
