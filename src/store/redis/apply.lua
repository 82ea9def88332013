-- Applies one partition's piece of a batch, exactly once (src/store/redis/apply.rs).
-- Every key shares the partition's hash tag, so the script runs in one slot.
--
-- KEYS[1]    <prefix>:{pN}:applied:<instance>:<epoch_ms>:<segment>   bitmap of applied batches
-- KEYS[2]    <prefix>:{pN}:counts                                     fields <article>:<counter>
-- KEYS[3]    <prefix>:{pN}:meta                                       fields <article>:section|lang
-- KEYS[4]    <prefix>:{pN}:m:<minute>                                 the minute's log of pieces
-- ARGV[1]    TTL of the applied record, seconds
-- ARGV[2]    this batch's bit in the record
-- ARGV[3]    TTL of the minute log, seconds
-- ARGV[4]    the piece's deltas as one entry of the minute log: "<article>:<counter> <n>\n"...
-- ARGV[5]    n, then n x (counts field, delta); then m, then m x (meta field, value)
--
-- Returns 1 when applied now, 0 when this batch's bit was set before. The record does
-- not depend on order, so a run may have several batches in flight at once.
--
-- Redis does not roll a script back on error: everything that can fail (a counter that
-- is not a number, or past 2^53 where Lua's numbers stop being exact) is checked
-- before the first write.
local SLICE = 2000 -- fields per HMGET/HSET: unpack() stops at 8,000 values
local EXACT = 9007199254740992

if redis.call('GETBIT', KEYS[1], ARGV[2]) == 1 then
  return 0
end

local n = tonumber(ARGV[5])
local totals = {}
for first = 0, n - 1, SLICE do
  local last = math.min(first + SLICE, n) - 1
  local fields = {}
  for i = first, last do
    fields[#fields + 1] = ARGV[6 + 2 * i]
  end
  local current = redis.call('HMGET', KEYS[2], unpack(fields))
  for k = 1, #fields do
    local stored = 0
    if current[k] then
      stored = tonumber(current[k])
      if not stored then
        return redis.error_reply('ERR counter ' .. fields[k] .. ' holds no number')
      end
    end
    local total = stored + tonumber(ARGV[6 + 2 * (first + k - 1) + 1])
    if total >= EXACT then
      return redis.error_reply('ERR counter ' .. fields[k] .. ' out of range')
    end
    totals[#totals + 1] = fields[k]
    totals[#totals + 1] = string.format('%d', total)
  end
end

local function hset_in_slices(key, flat, from, to)
  for i = from, to, 2 * SLICE do
    redis.call('HSET', key, unpack(flat, i, math.min(i + 2 * SLICE - 1, to)))
  end
end

redis.call('SETBIT', KEYS[1], ARGV[2], 1)
redis.call('EXPIRE', KEYS[1], ARGV[1])
hset_in_slices(KEYS[2], totals, 1, #totals)
local m_at = 6 + 2 * n
local m = tonumber(ARGV[m_at])
hset_in_slices(KEYS[3], ARGV, m_at + 1, m_at + 2 * m)
if ARGV[4] ~= '' then
  -- One command per piece, whatever its size: the top windows' time buckets. The TTL
  -- is set when the log is created: its last write follows within two minutes.
  if redis.call('RPUSH', KEYS[4], ARGV[4]) == 1 then
    redis.call('EXPIRE', KEYS[4], ARGV[3])
  end
end
return 1
