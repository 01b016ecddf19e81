-- schedule_fire: claim a schedule's due tick(s) and create their tasks, in one step.
-- The claim is a compare-and-set on (next_run_at, version): of any number of workers that
-- read the same due tick, one moves next_run_at forward and creates the tasks, the others
-- find it moved and create nothing.  A definition changed or deleted after the caller read
-- it has another version: nothing is created from a mix of old and new.  Tasks are created
-- as enqueue.lua creates them (backpressure, events, metrics), pending at once.
-- KEYS[1]: the schedule's hash (keys.schedule(name))
-- ARGV: name, mode ('tick': claim due ticks; 'now': one run now, next_run_at unchanged),
--   expected next_run_at, expected version, new next_run_at, missed (ticks skipped, for
--   schedule.missed), type, payload_json, priority, max_retries, timeout, n, then per task
--   3 values: id, scheduled_for_ms, metadata_json
-- Returns: {'fired', now_ms} (n may be 0: ticks skipped only), or {'stale'} (another worker
--   claimed the tick, or the schedule changed, was paused or deleted).
-- Errors: TQ:QUEUE_FULL when the pending backlog would pass CFG_MAX_PENDING.
local key, name, mode = KEYS[1], ARGV[1], ARGV[2]
local f = redis.call('HMGET', key, 'next_run_at', 'version', 'enabled')
if not f[2] or f[2] ~= ARGV[4] then return {'stale'} end
if mode == 'tick' and (f[1] ~= ARGV[3] or f[3] ~= '1') then return {'stale'} end
local ttype, payload, p = ARGV[7], ARGV[8], ARGV[9]
local n, FIRST = tonumber(ARGV[12]), 13
local backlog = redis.call('ZCARD', K_PENDING)
local parked = redis.call('ZCARD', K_PARKED)  -- pending too (see admit in lib.lua)
if n > 0 and backlog + parked + n > CFG_MAX_PENDING then
  return tq_error('QUEUE_FULL', tostring(backlog + parked))
end
local now, us = clock()
local seq = 0
if n > 0 then seq = redis.call('INCRBY', K_SEQ, n) - n end
local last = nil
for i = 0, n - 1 do
  local id, tick, metadata = ARGV[FIRST + i * 3], ARGV[FIRST + i * 3 + 1], ARGV[FIRST + i * 3 + 2]
  seq = seq + 1
  redis.call('HSET', k_task(id), 'id', id, 'type', ttype, 'payload', payload, 'priority', p,
    'max_retries', ARGV[10], 'timeout', ARGV[11], 'metadata', metadata, 'attempts', 0,
    'created_at', now, 'updated_at', now, 'state', 'pending', 'seq', seq, 'enqueued_us', us)
  redis.call('ZADD', K_PENDING, pending_score(p, seq), id)
  event({'submitted', id, ttype, p, '', 'pending', ''})
  local lag = math.max(0, now - tonumber(tick)) / 1000
  event({'schedule_fired', id, ttype, p, '', name, tonumber(tick), lag})
  count('submitted', ttype .. '\t' .. PRIORITY_NAMES[p], nil, 1)
  count('schedule_runs', name)
  observe('schedule_lag', BUCKETS_SCHEDULE_LAG, name, lag)
  last = {id, tick}
end
if n > 0 and backlog < CFG_NOTIFY_CAP then notify(p, n) end
local missed = tonumber(ARGV[6])
if missed > 0 then
  count('schedule_missed', name, nil, missed)
  event({'schedule_missed', '', ttype, p, '', name, missed, tonumber(ARGV[5])})
end
if mode == 'tick' then
  redis.call('HSET', key, 'next_run_at', ARGV[5])
  redis.call('ZADD', PREFIX .. 'schedules', ARGV[5], name)
end
if last then
  redis.call('HSET', key, 'last_run_at', now, 'last_task_id', last[1], 'last_tick', last[2])
  redis.call('HDEL', key, 'error')
end
emit()
return {'fired', now}
