-- Forgets one article (admin delete): its totals, its metadata and its counts in every
-- time bucket still kept, so no instance's top windows find it again on a reload.
-- Every key shares the partition's hash tag, so the script runs in one slot.
--
-- KEYS[1]    <prefix>:{pN}:counts
-- KEYS[2]    <prefix>:{pN}:meta
-- ARGV[1]    the article
-- ARGV[2]    the partition's key prefix, <prefix>:{pN}:   (logs ..m:<minute>, hours ..h:<hour>)
-- ARGV[3..4] first and last minute kept; ARGV[5..6] first and last hour kept
-- ARGV[7..]  every counter the article can have: views, share:<network>...
--
-- A minute log entry keeps its place (LSET, not LREM): readers remember how many
-- entries of a log they have read.
local prefix = ARGV[1] .. ':'
local fields = {}
for i = 7, #ARGV do
  fields[#fields + 1] = prefix .. ARGV[i]
end
redis.call('HDEL', KEYS[1], unpack(fields))
for h = tonumber(ARGV[5]), tonumber(ARGV[6]) do
  redis.call('HDEL', ARGV[2] .. 'h:' .. string.format('%d', h), unpack(fields))
end
for m = tonumber(ARGV[3]), tonumber(ARGV[4]) do
  local key = ARGV[2] .. 'm:' .. string.format('%d', m)
  local entries = redis.call('LRANGE', key, 0, -1)
  for i, entry in ipairs(entries) do
    local kept = {}
    for line in string.gmatch(entry, '[^\n]+\n') do
      if string.sub(line, 1, #prefix) ~= prefix then
        kept[#kept + 1] = line
      end
    end
    local filtered = table.concat(kept)
    if filtered ~= entry then
      redis.call('LSET', key, i - 1, filtered)
    end
  end
end
redis.call('HDEL', KEYS[2], ARGV[1] .. ':section', ARGV[1] .. ':lang')
return 1
