-- Folds the closed minutes of one partition into their hour buckets, exactly once
-- (src/store/redis/fold.rs). Every key shares the partition's hash tag.
--
-- KEYS[1]  <prefix>:{pN}:folded          the last minute folded
-- ARGV[1]  <prefix>:{pN}:                the partition's key prefix (logs ..m:<minute>, hours ..h:<hour>)
-- ARGV[2]  fold every minute up to this one (closed: no flush may write it any more)
-- ARGV[3]  the oldest minute to look at when the record is missing or older (the log TTL)
-- ARGV[4]  TTL of an hour bucket, seconds
--
-- A minute log holds one entry per applied piece, lines "<article>:<counter> <n>".
-- The hour bucket is a hash of those fields. Returns how many minutes had entries.
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
local upto = tonumber(ARGV[2])
local from = math.max(last + 1, tonumber(ARGV[3]))
if from > upto then
  return 0
end
local folded = 0
for m = from, upto do
  local entries = redis.call('LRANGE', ARGV[1] .. 'm:' .. string.format('%d', m), 0, -1)
  if #entries > 0 then
    local sums = {}
    for _, entry in ipairs(entries) do
      for field, n in string.gmatch(entry, '(%S+) (%d+)\n') do
        sums[field] = (sums[field] or 0) + tonumber(n)
      end
    end
    local hour = ARGV[1] .. 'h:' .. string.format('%d', math.floor(m / 60))
    for field, n in pairs(sums) do
      redis.call('HINCRBY', hour, field, string.format('%d', n))
    end
    redis.call('EXPIRE', hour, ARGV[4])
    folded = folded + 1
  end
end
redis.call('SET', KEYS[1], string.format('%d', upto))
return folded
