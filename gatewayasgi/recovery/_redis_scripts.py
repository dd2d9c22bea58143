"""The Lua scripts of ``RedisLog`` and ``RedisSessionStore``: each one atomic in Redis.

``APPEND`` adds a batch of entries exactly once: every batch carries its producer's
sequence numbers, and a number at or below the producer's last one (a batch sent again
after its reply was lost) is skipped. It chains every entry to the one before it
(field ``p``), trims by count (``MAXLEN ~``) and by age (``MINID ~``, Redis's clock), and
keeps every id's counter below ``2**19`` by moving to the next millisecond first, so
that ids map onto ``(ms << 20) | seq`` (a batch holds far fewer than ``2**19`` entries).

The session scripts compare the owner (and, for a claim, the token hash) and write in
one step, so two workers never both take a session.
"""

from __future__ import annotations

# KEYS: stream, producer key.
# ARGV: maxlen, max age in ms (0: none), producer key ttl in ms, then per entry:
#       seq, kind ("f" frame or "g" gap marker), payload, targets ("" for none).
APPEND = """
local stream, producer = KEYS[1], KEYS[2]
local maxlen, max_age = ARGV[1], tonumber(ARGV[2])
local last_seq = tonumber(redis.call('GET', producer) or '0')
local previous = '0-0'
local ok, info = pcall(redis.call, 'XINFO', 'STREAM', stream)
if ok then
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then previous = info[i + 1] end
  end
end
local next_id = '*'
local added = 0
for i = 4, #ARGV, 4 do
  local seq = tonumber(ARGV[i])
  if seq > last_seq then
    local id
    if ARGV[i + 3] == '' then
      id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, next_id,
                      ARGV[i + 1], ARGV[i + 2], 'p', previous)
    else
      id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, next_id,
                      ARGV[i + 1], ARGV[i + 2], 'p', previous, 't', ARGV[i + 3])
    end
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
if max_age > 0 and added > 0 then
  local now = redis.call('TIME')
  local min_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - max_age
  if min_ms > 0 then
    redis.call('XTRIM', stream, 'MINID', '~', string.format('%d-0', min_ms))
  end
end
return added
"""

# KEYS: session. ARGV: owner, token hash, data (JSON), ttl in ms. 1 written, 0 refused.
SAVE = """
local current = redis.call('HGET', KEYS[1], 'owner')
if current and current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', ARGV[2], 'data', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS: session. ARGV: token hash, new owner, ttl in ms. The data, or nil.
CLAIM = """
local token = redis.call('HGET', KEYS[1], 'token')
if not token or token ~= ARGV[1] then return false end
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('HGET', KEYS[1], 'data')
"""

# KEYS: session. ARGV: owner. 1 deleted, 0 not the owner's (or gone).
DROP = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""
