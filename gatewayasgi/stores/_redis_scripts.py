"""The Lua scripts of ``RedisLog`` and ``RedisSessionStore``: each one atomic in Redis.

``APPEND`` adds a batch of entries exactly once: every batch carries its producer's
sequence numbers, and a number at or below the producer's last one (a batch sent again
after its reply was lost) is skipped. Each entry names its producer and number (field
``n``): a master that failed over may have lost the producer's last number with the
entries (replication is asynchronous), and a batch sent again then is written again;
readers skip what they delivered already. It chains every entry to the one before it
(field ``p``) and keeps every id's counter below ``2**19`` by moving to the next
millisecond first, so that ids map onto ``(ms << 20) | seq`` (a batch holds far fewer
than ``2**19`` entries). Then it trims the oldest entries while the stream holds more
than ``maxlen`` entries or ``max bytes`` (frames and targets; a running total in the
``history`` field of ``<stream key>:bytes``, each entry's size read back from its fields
when it goes), and those older than ``max age`` (Redis's clock; at most 1,024 a call):
``XTRIM MINID`` just after the last one to go, so entries leave oldest first and the
chain of the rest stays whole.

An oversized frame (kind ``o``) is a marker in the stream (field ``o``: its size) and
the frame itself goes into ``<stream key>:live`` under the same id, for the readers to
deliver live: that stream keeps no entry older than ``live ms`` (it also expires when
no oversized frame came for that long) and at most ``max bytes`` in all (the newest
always stays), counted in the ``live`` field of the same hash.

The session scripts compare the owner (and, for a claim, the token hash) and write in
one step, so two workers never both take a session.
"""

from __future__ import annotations

# KEYS: stream, producer key, byte counters (hash), live stream.
# ARGV: maxlen, max age in ms (0: none), producer key ttl in ms, max bytes, live ms, the
#       producer's tag, then per entry: seq, kind ("f" frame, "o" oversized frame, "g" gap
#       marker), payload, targets ("" for none).
# Returns the id of the last entry added ("" when the batch was there already).
APPEND = """
local stream, producer, counters, live = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local maxlen, max_age = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_bytes, live_ms, tag = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local last_seq = tonumber(redis.call('GET', producer) or '0')
local previous = '0-0'
local length = 0
local ok, info = pcall(redis.call, 'XINFO', 'STREAM', stream)
if ok then
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then previous = info[i + 1] end
    if info[i] == 'length' then length = info[i + 1] end
  end
end
local total, live_total = 0, 0
if length > 0 then total = tonumber(redis.call('HGET', counters, 'history') or '0') end
live_total = tonumber(redis.call('HGET', counters, 'live') or '0')

-- The bytes an entry counts: its frame and targets (a marker: its targets only).
local function size_of(fields)
  local n = 0
  for j = 1, #fields, 2 do
    if fields[j] == 'f' or fields[j] == 't' then n = n + #fields[j + 1] end
  end
  return n
end
local function after(id)
  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')
  return string.format('%s-%d', ms, tonumber(seq) + 1)
end
local function ms_of(id)
  return tonumber(string.match(id, '^(%d+)'))
end

local next_id = '*'
local added = 0
local newest_live = nil
for i = 7, #ARGV, 4 do
  local seq = tonumber(ARGV[i])
  if seq > last_seq then
    local kind, payload, targets = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local fields
    if kind == 'o' then
      fields = {'o', string.format('%d', #payload), 'p', previous}
    else
      fields = {kind, payload, 'p', previous}
    end
    if targets ~= '' then
      fields[#fields + 1] = 't'
      fields[#fields + 1] = targets
    end
    fields[#fields + 1] = 'n'
    fields[#fields + 1] = tag .. ':' .. ARGV[i]
    local id = redis.call('XADD', stream, next_id, unpack(fields))
    if kind == 'o' and pcall(redis.call, 'XADD', live, id, 'f', payload) then
      redis.call('PEXPIRE', live, live_ms)
      live_total = live_total + #payload
      newest_live = id
    end
    total = total + size_of(fields)
    length = length + 1
    local ms, counter = string.match(id, '^(%d+)%-(%d+)$')
    if tonumber(counter) >= 524288 then
      next_id = string.format('%d-*', tonumber(ms) + 1)
    end
    previous = id
    last_seq = seq
    added = added + 1
  end
end
redis.call('SET', producer, string.format('%d', last_seq), 'PX', ARGV[3])
if added == 0 then return '' end

local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local min_ms = 0
if max_age > 0 then min_ms = now_ms - max_age end
-- Oldest first, while over the count or the bytes (or, at most 1024 a call, too old):
-- read a batch of the oldest, subtract their sizes, cut the stream after the last one.
local step, aged = math.max(added, 16), 0
while length > 0 do
  local batch = redis.call('XRANGE', stream, '-', '+', 'COUNT', step)
  local cut, done = nil, #batch < step
  for _, item in ipairs(batch) do
    if item[1] == previous then  -- the newest entry stays, for the readers
      done = true
      break
    end
    if length <= maxlen and total <= max_bytes then
      if aged >= 1024 or ms_of(item[1]) >= min_ms then
        done = true
        break
      end
      aged = aged + 1
    end
    total = total - size_of(item[2])
    length = length - 1
    cut = item[1]
  end
  if cut then redis.call('XTRIM', stream, 'MINID', after(cut)) end
  if done or cut == nil then break end
  step = math.min(step * 2, 1024)
end
if length <= 0 or total < 0 then total = 0 end

-- Live copies of oversized frames: none older than live ms, at most max bytes in all
-- (the newest always stays, for the readers to deliver).
while live_total > 0 do
  local first = redis.call('XRANGE', live, '-', '+', 'COUNT', 1)[1]
  if first == nil then
    live_total = 0
  elseif first[1] ~= newest_live and
      (live_total > max_bytes or ms_of(first[1]) < now_ms - live_ms) then
    redis.call('XTRIM', live, 'MINID', after(first[1]))
    live_total = live_total - size_of(first[2])
  else
    break
  end
end
if live_total < 0 then live_total = 0 end
redis.call('HSET', counters, 'history', string.format('%d', total),
           'live', string.format('%d', live_total))
return previous
"""

# KEYS: session. ARGV: owner, token hash, data (JSON), ttl in ms, identity hash ("" for
# none). 1 written, 0 refused.
SAVE = """
local current = redis.call('HGET', KEYS[1], 'owner')
if current and current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', ARGV[2], 'data', ARGV[3],
           'who', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS: session. ARGV: token hash, new owner, ttl in ms, identity hash ("" for none), new
# token hash ("" keeps it). The data; nil (no session, or another token); -1 (the token
# matched, the identity did not: nothing changed).
CLAIM = """
local token = redis.call('HGET', KEYS[1], 'token')
if not token or token ~= ARGV[1] then return false end
if (redis.call('HGET', KEYS[1], 'who') or '') ~= ARGV[4] then return -1 end
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'token', ARGV[5]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('HGET', KEYS[1], 'data')
"""

# KEYS: session. ARGV: owner. 1 deleted, 0 not the owner's (or gone).
DROP = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""
