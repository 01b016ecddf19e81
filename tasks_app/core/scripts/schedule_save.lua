-- schedule_save: write, change or delete one periodic schedule (shard 0 of its queue).
-- Every definition change takes a new version from the shard's counter (never reused, even
-- after a delete), so a claim that read the old definition finds the version changed.
-- KEYS[1]: the schedule's hash (keys.schedule(name))
-- ARGV: name, op, expected version ('' = any), then field/value pairs:
--   'put'    create or replace: the pairs are the whole definition (the old one is dropped;
--            created_at, and next_run_at, anchor and the last run unless given, are kept);
--            enabled '0' keeps it out of the due set
--   'set'    change the given fields of an existing schedule (same due-set rule)
--   'report' set (or with an '' value clear) the given report fields (error) without a new
--            version; publishes schedule.error when a non-empty error is set
--   'delete' remove it
-- Returns: the new version ('put', 'set'), or 1 ('report', 'delete')
-- Errors: TQ:SCHEDULE_NOT_FOUND for 'set', 'report' or 'delete' of a missing schedule;
--   TQ:SCHEDULE_CHANGED when an expected version is given and differs.
local key, name, op, expected = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local due_set = PREFIX .. 'schedules'
local current = redis.call('HMGET', key, 'version', 'created_at', 'type', 'priority')
if op ~= 'put' and not current[1] then return tq_error('SCHEDULE_NOT_FOUND', name) end
if expected ~= '' and current[1] ~= expected then
  return tq_error('SCHEDULE_CHANGED', name)
end
if op == 'delete' then
  redis.call('DEL', key)
  redis.call('ZREM', due_set, name)
  return 1
end
local now = now_ms()
local pairs_ = {}
for i = 4, #ARGV, 2 do
  pairs_[#pairs_ + 1] = ARGV[i]
  pairs_[#pairs_ + 1] = ARGV[i + 1]
end
if op == 'report' then
  for i = 1, #pairs_, 2 do
    if pairs_[i + 1] == '' then
      redis.call('HDEL', key, pairs_[i])
    else
      redis.call('HSET', key, pairs_[i], pairs_[i + 1])
      if pairs_[i] == 'error' then
        event({'schedule_error', '', current[3] or '', current[4] or '0', '', name, pairs_[i + 1]})
      end
    end
  end
  emit()
  return 1
end
local version = redis.call('INCR', PREFIX .. 'schedule-version')
if op == 'put' then  -- the state the definition does not set is kept
  local keep = {'next_run_at', 'anchor', 'last_run_at', 'last_task_id', 'last_tick'}
  local kept = redis.call('HMGET', key, unpack(keep))
  redis.call('DEL', key)
  redis.call('HSET', key, 'created_at', current[2] or now)
  for i, k in ipairs(keep) do
    if kept[i] then redis.call('HSET', key, k, kept[i]) end
  end
end
if #pairs_ > 0 then redis.call('HSET', key, unpack(pairs_)) end
redis.call('HSET', key, 'version', version, 'updated_at', now)
local f = redis.call('HMGET', key, 'next_run_at', 'enabled')
if f[1] and f[1] ~= '' and f[2] == '1' then
  redis.call('ZADD', due_set, f[1], name)
  redis.call('LPUSH', PREFIX .. 'schedules-wake', '1')
  redis.call('LTRIM', PREFIX .. 'schedules-wake', 0, 0)
else
  redis.call('ZREM', due_set, name)
end
return version
