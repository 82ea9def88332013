-- Applies one partition's piece of a batch, exactly once (src/store/redis/apply.rs).
-- Every key shares the partition's hash tag, so the script runs in one slot.
--
-- KEYS[1]    <prefix>:{pN}:applied:<instance>:<epoch_ms>   last applied "<seq>:<chunk>"
-- KEYS[2]    <prefix>:{pN}:meta                             fields <article>:section|lang
-- KEYS[3]    <prefix>:{pN}:m:<minute>                       the minute's log of pieces
-- KEYS[4..]  <prefix>:{pN}:c:<article>                      one per article of the piece
-- ARGV[1]    TTL of the applied record, seconds
-- ARGV[2..3] seq, chunk of this batch
-- ARGV[4]    TTL of the minute log, seconds
-- ARGV[5]    the piece's deltas as one entry of the minute log: "<article>:<counter> <n>\n"...
-- then, per article in KEYS order: n, n x (field, delta), m, m x (meta field, value)
--
-- Returns 1 when applied now, 0 when this id (or a later one of the same run) was
-- applied before. A run applies its batches in order, one at a time, so "not after
-- the last applied id" means "applied before".
local seq, chunk = tonumber(ARGV[2]), tonumber(ARGV[3])
local last = redis.call('GET', KEYS[1])
if last then
  local s, c = string.match(last, '^(%d+):(%d+)$')
  s, c = tonumber(s), tonumber(c)
  if seq < s or (seq == s and chunk <= c) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2] .. ':' .. ARGV[3], 'EX', ARGV[1])
if ARGV[5] ~= '' then
  -- One command per piece, whatever its size: the top windows' time buckets. The TTL
  -- is set when the log is created: its last write follows within two minutes.
  if redis.call('RPUSH', KEYS[3], ARGV[5]) == 1 then
    redis.call('EXPIRE', KEYS[3], ARGV[4])
  end
end
local a = 6
for k = 4, #KEYS do
  local n = tonumber(ARGV[a])
  for i = 1, n do
    redis.call('HINCRBY', KEYS[k], ARGV[a + 2 * i - 1], ARGV[a + 2 * i])
  end
  a = a + 1 + 2 * n
  local m = tonumber(ARGV[a])
  if m > 0 then
    redis.call('HSET', KEYS[2], unpack(ARGV, a + 1, a + 2 * m))
  end
  a = a + 1 + 2 * m
end
return 1
