-- queue_stats: one consistent snapshot of every priority's counts (reads only).
-- KEYS[1]: the worker registry
-- ARGV: none
-- Returns: {pending, delayed, running, paused (0/1)} for priorities 0..3 in order, the
--   dead-letter stream's length, then the metrics counters as a flat field/value list.  Running per priority comes from the task records
--   of the leased ids (one HGET per running task).
local out = {}
local running = {['0'] = 0, ['1'] = 0, ['2'] = 0, ['3'] = 0}
local function tally_running(ids)
  for _, id in ipairs(ids) do
    local p = redis.call('HGET', k_task(id), 'priority')
    if p and running[p] then running[p] = running[p] + 1 end
  end
end
for _, w in ipairs(redis.call('ZRANGE', K_WORKERS, 0, -1)) do
  tally_running(redis.call('SMEMBERS', k_worker_active(w)))
end
tally_running(redis.call('ZRANGE', K_LEASES, 0, -1))
for p = 0, 3 do
  out[#out + 1] = redis.call('ZCOUNT', K_PENDING, band_low(p), band_high(p))
    + redis.call('ZCOUNT', K_PARKED, band_low(p), band_high(p))
  out[#out + 1] = redis.call('ZCARD', k_delayed(p))
  out[#out + 1] = running[tostring(p)]
  out[#out + 1] = redis.call('SISMEMBER', K_PAUSED, tostring(p))
end
out[#out + 1] = redis.call('XLEN', K_DLQ)
local counters = {}
local all = redis.call('HGETALL', K_METRICS)
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'c\t' then
    counters[#counters + 1] = all[i]
    counters[#counters + 1] = all[i + 1]
  end
end
out[#out + 1] = counters
return out
