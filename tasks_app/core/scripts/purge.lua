-- purge: pending -> cancelled for one priority's queue, one batch at a time, oldest
-- first; each task leaves the pending set in the same step, like cancel.
-- KEYS[1]: the pending set
-- ARGV: priority, batch size, highest seq to touch (tasks enqueued after the
--   operator looked, which have a higher seq, are left alone)
-- Returns: {n_cancelled, n_left in the pending set, entries read}.  An id whose record
--   is gone or no longer pending is only taken out of the set (no dangling entry).
local p, limit, upto = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local ids = redis.call('ZRANGEBYSCORE', K_PENDING, band_low(p), pending_score(p, upto),
  'LIMIT', 0, limit)
if #ids < limit then  -- then the parked ones (pending too: see admit in lib.lua)
  local parked = redis.call('ZRANGEBYSCORE', K_PARKED, band_low(p), pending_score(p, upto),
    'LIMIT', 0, limit - #ids)
  for _, id in ipairs(parked) do ids[#ids + 1] = id end
end
local now = now_ms()
local n = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', K_PENDING, id)
  local tk = k_task(id)
  local f = redis.call('HMGET', tk, 'state', 'type', 'owner', 'wf')
  drop_parked(id, f[2])
  if f[1] == 'pending' then
    finish(tk, 'cancelled', now)
    count('cancelled', f[2])
    n = n + 1
    event({'cancelled', id, f[2], p, f[3] or ''})
    if f[4] then wf_cancel(f[4], now) end
  end
end
emit()
return {n, redis.call('ZCOUNT', K_PENDING, band_low(p), band_high(p))
  + redis.call('ZCOUNT', K_PARKED, band_low(p), band_high(p)), #ids}
