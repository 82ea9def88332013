-- Applies one partition's piece of a batch, exactly once (src/store/redis/apply.rs).
-- Every key shares the partition's hash tag, so the script runs in one slot.
--
-- KEYS[1]    <prefix>:{pN}:applied:<instance>:<epoch_ms>   last applied "<seq>:<chunk>"
-- KEYS[2]    <prefix>:{pN}:meta                             fields <article>:section|lang
-- KEYS[3]    <prefix>:{pN}:m:<minute>                       the piece's minute bucket
-- KEYS[4]    <prefix>:{pN}:h:<hour>                         the piece's hour bucket
-- KEYS[5..]  <prefix>:{pN}:c:<article>                      one per article of the piece
-- ARGV[1]    TTL of the applied record, seconds
-- ARGV[2..3] seq, chunk of this batch
-- ARGV[4..5] TTL of the minute bucket, of the hour bucket, seconds
-- then, per article in KEYS order: article id, n, n x (field, delta), m, m x (meta field, value)
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
local a = 6
local wrote = false
for k = 5, #KEYS do
  local article = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  a = a + 1
  for i = 1, n do
    local field, delta = ARGV[a + 2 * i - 1], ARGV[a + 2 * i]
    local bucket_field = article .. ':' .. field
    redis.call('HINCRBY', KEYS[k], field, delta)
    redis.call('HINCRBY', KEYS[3], bucket_field, delta)
    redis.call('HINCRBY', KEYS[4], bucket_field, delta)
    wrote = true
  end
  a = a + 1 + 2 * n
  local m = tonumber(ARGV[a])
  if m > 0 then
    redis.call('HSET', KEYS[2], unpack(ARGV, a + 1, a + 2 * m))
  end
  a = a + 1 + 2 * m
end
if wrote then
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  redis.call('EXPIRE', KEYS[4], ARGV[5])
end
return 1
