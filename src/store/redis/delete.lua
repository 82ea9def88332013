-- Forgets one article (admin delete): its totals, its metadata and its fields in every
-- time bucket still kept, so no instance's top windows find it again on a reload.
-- Every key shares the partition's hash tag, so the script runs in one slot.
--
-- KEYS[1]    <prefix>:{pN}:c:<article>
-- KEYS[2]    <prefix>:{pN}:meta
-- ARGV[1]    the article
-- ARGV[2]    the partition's key prefix, <prefix>:{pN}:   (bucket keys: ..m:<minute>, ..h:<hour>)
-- ARGV[3..4] first and last minute kept; ARGV[5..6] first and last hour kept
local counters = redis.call('HKEYS', KEYS[1])
if #counters > 0 then
  local fields = {}
  for i, c in ipairs(counters) do
    fields[i] = ARGV[1] .. ':' .. c
  end
  for m = tonumber(ARGV[3]), tonumber(ARGV[4]) do
    redis.call('HDEL', ARGV[2] .. 'm:' .. string.format('%d', m), unpack(fields))
  end
  for h = tonumber(ARGV[5]), tonumber(ARGV[6]) do
    redis.call('HDEL', ARGV[2] .. 'h:' .. string.format('%d', h), unpack(fields))
  end
end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[1] .. ':section', ARGV[1] .. ':lang')
return 1
