-- Forgets one article (admin delete): its totals, its metadata and its counts in every
-- time bucket still kept, so no instance's top windows find it again on a reload.
-- Every key shares the partition's hash tag, so the script runs in one slot.
--
-- KEYS[1]    <prefix>:{pN}:counts
-- KEYS[2]    <prefix>:{pN}:meta
-- KEYS[3]    <prefix>:{pN}:admin      stream of admin changes: every instance forgets the
--                                     article and lowers its all-time total by what it held
-- KEYS[4]    <prefix>:{pN}:pages
-- KEYS[5]    <prefix>:{pN}:visitors
-- ARGV[1]    the article
-- ARGV[2]    the partition's key prefix, <prefix>:{pN}:   (logs ..m:<minute>, hours ..h:<hour>)
-- ARGV[3..4] first and last minute kept; ARGV[5..6] first and last hour kept
-- ARGV[7]    the admin stream's approximate length cap
-- ARGV[8..]  every counter the article can have: views, share:<network>...
--
-- A minute log entry keeps its place (LSET, not LREM): readers remember how many
-- entries of a log they have read.
local prefix = ARGV[1] .. ':'
local fields = {}
for i = 8, #ARGV do
  fields[#fields + 1] = prefix .. ARGV[i]
end
local old = redis.call('HMGET', KEYS[1], unpack(fields))
local change = {'article', ARGV[1], 'forget', '1'}
for i, value in ipairs(old) do
  local n = value and tonumber(value) or 0
  if n ~= 0 then
    change[#change + 1] = ARGV[7 + i]
    change[#change + 1] = string.format('%d', -n)
  end
end
redis.call('HDEL', KEYS[1], unpack(fields))
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', unpack(change))
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
redis.call('HDEL', KEYS[4], ARGV[1] .. ':title', ARGV[1] .. ':url')
redis.call('HDEL', KEYS[5], ARGV[1])
return 1
