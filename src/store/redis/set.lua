-- Replaces one article's totals (admin PUT) and records the change in the partition's
-- admin stream, atomically, so every instance adjusts its top windows by exactly the
-- difference (src/store/redis/admin.rs). Every key shares the partition's hash tag.
--
-- KEYS[1]    <prefix>:{pN}:counts
-- KEYS[2]    <prefix>:{pN}:admin      stream of admin changes
-- ARGV[1]    the article
-- ARGV[2]    the stream's approximate length cap
-- ARGV[3..]  (counter, new total) for every counter the article can have; 0 removes it
local entry = {'article', ARGV[1], 'forget', '0'}
for i = 3, #ARGV, 2 do
  local field = ARGV[1] .. ':' .. ARGV[i]
  local old = tonumber(redis.call('HGET', KEYS[1], field) or '0') or 0
  local new = tonumber(ARGV[i + 1])
  if new == 0 then
    redis.call('HDEL', KEYS[1], field)
  else
    redis.call('HSET', KEYS[1], field, ARGV[i + 1])
  end
  if new ~= old then
    entry[#entry + 1] = ARGV[i]
    entry[#entry + 1] = string.format('%d', new - old)
  end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(entry))
return 1
