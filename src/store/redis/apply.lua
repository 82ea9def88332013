-- Applies one partition's piece of a batch, exactly once (src/store/redis/apply.rs).
-- Every key shares the partition's hash tag, so the script runs in one slot.
--
-- KEYS[1]    <prefix>:{pN}:applied:<instance>:<epoch_ms>:<segment>   bitmap of applied batches
-- KEYS[2]    <prefix>:{pN}:counts                                     fields <article>:<counter>
-- KEYS[3]    <prefix>:{pN}:meta                                       fields <article>:section|lang
-- KEYS[4]    <prefix>:{pN}:m:<minute>                                 the minute's log of pieces
-- KEYS[5]    <prefix>:{pN}:sh:<hour>                                  hourly series, fields <article>:v|s
-- KEYS[6]    <prefix>:{pN}:sd:<day>                                   daily series, fields <article>:v|s
-- KEYS[7]    <prefix>:{pN}:sections                                   set of the sections seen
-- KEYS[8]    <prefix>:{pN}:langs                                      set of the languages seen
-- KEYS[9]    <prefix>:{pN}:pages                                      fields <article>:title|url
-- KEYS[10]   <prefix>:{pN}:visitors                                   field <article>: visitors
-- ARGV[1]    TTL of the applied record, seconds
-- ARGV[2]    this batch's bit in the record
-- ARGV[3]    TTL of the minute log, seconds
-- ARGV[4]    the piece's deltas as one entry of the minute log: "<article>:<counter> <n>\n"...
-- ARGV[5]    n, then n x (counts field, delta); then m, then m x (key, op, field, value):
--            key 3 (meta) or 9 (pages), op HSET (a signed value replaces) or HSETNX
--            (unsigned: the first value stored, by any instance, stands);
--            then the TTLs of the hour and the day series buckets (0: past retention,
--            not written), k, k x (article, views, shares); then the sketch
--            key prefix <prefix>:{pN}:v:, the sketches' TTL, g, and g x (article, day, c,
--            c visitor hashes): added to the day's HyperLogLog of the article
--            (<prefix>:{pN}:v:<day>:<article>), and what its count grew by to the
--            article's visitors (distinct visitors per day, summed over days)
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

-- The new totals of `fields` in hash `key` after adding `deltas`, as a flat list
-- field, total, field, total...; or nil and an error reply.
local function added(key, fields, deltas)
  local totals = {}
  for first = 1, #fields, SLICE do
    local last = math.min(first + SLICE - 1, #fields)
    local current = redis.call('HMGET', key, unpack(fields, first, last))
    for k = 1, #current do
      local i = first + k - 1
      local stored = 0
      if current[k] then
        stored = tonumber(current[k])
        if not stored then
          return nil, redis.error_reply('ERR counter ' .. fields[i] .. ' holds no number')
        end
      end
      local total = stored + deltas[i]
      if total >= EXACT then
        return nil, redis.error_reply('ERR counter ' .. fields[i] .. ' out of range')
      end
      totals[#totals + 1] = fields[i]
      totals[#totals + 1] = string.format('%d', total)
    end
  end
  return totals
end

-- HSET of field, value pairs in slices; returns how many fields were new.
local function hset_in_slices(key, flat, from, to)
  local new = 0
  for i = from, to, 2 * SLICE do
    new = new + redis.call('HSET', key, unpack(flat, i, math.min(i + 2 * SLICE - 1, to)))
  end
  return new
end

-- The totals.
local n = tonumber(ARGV[5])
local fields, deltas = {}, {}
for i = 0, n - 1 do
  fields[#fields + 1] = ARGV[6 + 2 * i]
  deltas[#deltas + 1] = tonumber(ARGV[7 + 2 * i])
end
local totals, failed = added(KEYS[2], fields, deltas)
if not totals then
  return failed
end

-- The series: one field per article and measure in the hour's and the day's hash.
local m_at = 6 + 2 * n
local m = tonumber(ARGV[m_at])
local s_at = m_at + 4 * m + 1
local ttls = { tonumber(ARGV[s_at]), tonumber(ARGV[s_at + 1]) }
local k = tonumber(ARGV[s_at + 2])
local s_fields, s_deltas = {}, {}
for i = 0, k - 1 do
  local at = s_at + 3 + 3 * i
  -- Only the measures that changed: most articles of a flush have views, few shares.
  for measure = 1, 2 do
    local n = tonumber(ARGV[at + measure])
    if n > 0 then
      s_fields[#s_fields + 1] = ARGV[at] .. (measure == 1 and ':v' or ':s')
      s_deltas[#s_deltas + 1] = n
    end
  end
end
local series = {}
for b = 1, 2 do
  if ttls[b] > 0 and #s_fields > 0 then
    series[b], failed = added(KEYS[4 + b], s_fields, s_deltas)
    if not series[b] then
      return failed
    end
  end
end

redis.call('SETBIT', KEYS[1], ARGV[2], 1)
redis.call('EXPIRE', KEYS[1], ARGV[1])
hset_in_slices(KEYS[2], totals, 1, #totals)
-- The sections and languages that are stored now (a first value, or a signed one that
-- replaces) go to the sets /v1/meta reads; a value HSETNX refused does not.
local stored_now = { {}, {} }
for i = m_at + 1, m_at + 4 * m, 4 do
  local wrote = redis.call(ARGV[i + 1], KEYS[tonumber(ARGV[i])], ARGV[i + 2], ARGV[i + 3])
  if ARGV[i] == '3' and (ARGV[i + 1] == 'HSET' or wrote == 1) then
    local attr = string.match(ARGV[i + 2], ':(%a+)$')
    local set = (attr == 'section' and 1) or (attr == 'lang' and 2) or nil
    if set then
      stored_now[set][ARGV[i + 3]] = true
    end
  end
end
for b = 1, 2 do
  -- The TTL is set when a field is created (so also with the key), not at every piece:
  -- a series bucket's retention runs from its articles' first points.
  if series[b] and hset_in_slices(KEYS[4 + b], series[b], 1, #series[b]) > 0 then
    redis.call('EXPIRE', KEYS[4 + b], ttls[b])
  end
end
for set = 1, 2 do
  local values = {}
  for v in pairs(stored_now[set]) do
    values[#values + 1] = v
  end
  for i = 1, #values, SLICE do
    redis.call('SADD', KEYS[6 + set], unpack(values, i, math.min(i + SLICE - 1, #values)))
  end
end
local v_at = s_at + 3 + 3 * k
-- The visitors: one sketch per article and day; the article's total grows by what
-- the sketch's count grew.
local groups = tonumber(ARGV[v_at + 2])
local at = v_at + 3
for _ = 1, groups do
  local article, c = ARGV[at], tonumber(ARGV[at + 2])
  local key = ARGV[v_at] .. ARGV[at + 1] .. ':' .. article
  local before = redis.call('PFCOUNT', key)
  local changed = 0
  for first = at + 3, at + 2 + c, SLICE do
    changed = changed + redis.call('PFADD', key, unpack(ARGV, first, math.min(first + SLICE - 1, at + 2 + c)))
  end
  if changed > 0 then
    local grew = redis.call('PFCOUNT', key) - before
    if grew > 0 then
      redis.call('HINCRBY', KEYS[10], article, grew)
    end
    if before == 0 then
      redis.call('EXPIRE', key, ARGV[v_at + 1])
    end
  end
  at = at + 3 + c
end
if ARGV[4] ~= '' then
  -- One command per piece, whatever its size: the top windows' time buckets. The TTL
  -- is set when the log is created: its last write follows within two minutes.
  if redis.call('RPUSH', KEYS[4], ARGV[4]) == 1 then
    redis.call('EXPIRE', KEYS[4], ARGV[3])
  end
end
return 1
