-- dlq_retry: dead_letter -> pending with attempts reset and error cleared;
-- the entry leaves the dead-letter stream.
-- KEYS[1]: the dead-letter stream
-- ARGV: mode ('ids' | 'all'), then task ids (mode 'ids') or a batch size and the last
--   entry id to touch ('all': entries added meanwhile, e.g. tasks that die again, wait)
-- Returns: {n_requeued, n_left_in_dlq, entries read ('all')}.  With mode 'ids', ids that are not
--   dead-lettered are skipped (the caller compares the count).
local now = now_ms()
local ids = {}
local scanned = 0
if ARGV[1] == 'all' then
  scanned = walk_dlq(tonumber(ARGV[2]), ARGV[3], function(id) ids[#ids + 1] = id end)
else
  for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local n = 0
for _, id in ipairs(ids) do
  local tk = k_task(id)
  local f = redis.call('HMGET', tk, 'state', 'dlq_id', 'priority')
  if f[1] == 'dead_letter' then
    rerun(id, f[3], now)
    n = n + 1
  end
end
return {n, redis.call('XLEN', K_DLQ), scanned}
