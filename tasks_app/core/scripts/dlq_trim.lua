-- dlq_trim: keep the dead-letter queue within its bounds by deleting the oldest entries
-- and their task records (run by the worker's janitor, never on the hot path).
-- KEYS[1]: the dead-letter stream
-- ARGV[1]: most entries to keep (0: no bound)
-- ARGV[2]: oldest entry to keep, in ms of age (0: no bound); an entry's age comes from its
--   stream id, the Redis clock when it was added
-- ARGV[3]: most entries to delete in this call
-- Returns: {deleted over the count bound, deleted over the age bound, entries left}.
-- Errors: TQ:INVALID when a bound or the batch size is not a non-negative integer.
local max_entries, max_age, batch = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if not (max_entries and max_age and batch) or max_entries < 0 or max_age < 0 or batch < 1 then
  return tq_error('INVALID', 'dlq_trim bounds')
end

local function drop(entries)
  local n = 0
  for _, e in ipairs(entries) do n = n + drop_dead_entry(e) end
  return n
end

local by_count, by_age = 0, 0
if max_entries > 0 then
  local excess = redis.call('XLEN', K_DLQ) - max_entries
  if excess > 0 then
    by_count = drop(redis.call('XRANGE', K_DLQ, '-', '+', 'COUNT', math.min(excess, batch)))
  end
end
if max_age > 0 and by_count < batch then
  local cutoff = string.format('%.0f', now_ms() - max_age)
  by_age = drop(redis.call('XRANGE', K_DLQ, '-', '(' .. cutoff .. '-0', 'COUNT',
    batch - by_count))
end
if by_count > 0 then count('dlq_trimmed', 'max_entries', nil, by_count) end
if by_age > 0 then count('dlq_trimmed', 'max_age', nil, by_age) end
emit()
return {by_count, by_age, redis.call('XLEN', K_DLQ)}
