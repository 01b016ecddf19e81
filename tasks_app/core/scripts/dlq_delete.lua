-- dlq_delete: remove dead-letter entries and the dead tasks' records.
-- KEYS[1]: the dead-letter stream
-- ARGV: mode ('ids' | 'all'), then task ids (mode 'ids') or a batch size and the last
--   entry id to touch ('all': entries added meanwhile, e.g. tasks that die again, wait)
-- Returns: {n_deleted, n_left_in_dlq, entries read ('all')}.
local n = 0
local scanned = 0
if ARGV[1] == 'all' then
  scanned, n = walk_dlq(tonumber(ARGV[2]), ARGV[3], drop_dead_record)
else
  for i = 2, #ARGV do
    local tk = k_task(ARGV[i])
    local f = redis.call('HMGET', tk, 'state', 'dlq_id')
    if f[1] == 'dead_letter' then
      redis.call('XDEL', K_DLQ, f[2])
      redis.call('DEL', tk)
      n = n + 1
    end
  end
end
return {n, redis.call('XLEN', K_DLQ), scanned}
