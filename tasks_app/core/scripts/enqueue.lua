-- enqueue: create tasks, pending or scheduled, all or nothing.
-- KEYS[1]: the sequence key (routes the call to the namespace's slot)
-- ARGV: n, idempotency key ('' = none), its lifetime in ms, then per task 9 values:
--   id, type, payload_json, priority, max_retries, timeout, metadata_json,
--   scheduled_at_ms ('' = none), delay_ms ('' = none)
-- Returns: {now_ms, created_1, ..., created_n}; created is 1, or 0 when a task
--   with that id already exists (so a retried call never duplicates);
--   or {'duplicate', id_1, ..., id_k} when the idempotency key was used before
--   (nothing is created; the ids are the tasks that first call created).
-- Errors: TQ:QUEUE_FULL when the pending backlog would pass CFG_MAX_PENDING.
local n = tonumber(ARGV[1])
local idem = ARGV[2]
local now = now_ms()
local W = 9
local FIRST = 4

if idem ~= '' then
  local prior = redis.call('GET', k_idem(idem))
  if prior then
    local out = {'duplicate'}
    for id in string.gmatch(prior, '[^,]+') do out[#out + 1] = id end
    return out
  end
end

local function due_of(base)
  local at, delay = ARGV[base + 7], ARGV[base + 8]
  if at ~= '' then return tonumber(at) end
  if delay ~= '' then return now + tonumber(delay) end
  return nil
end

local backlog = 0
for p = 0, 3 do
  backlog = backlog + redis.call('ZCARD', k_pending(p))
end
local adding = 0
local seen = {}
for i = 0, n - 1 do
  local id = ARGV[FIRST + i * W]
  local due = due_of(FIRST + i * W)
  if not seen[id] and (not due or due <= now) and redis.call('EXISTS', k_task(id)) == 0 then
    adding = adding + 1
  end
  seen[id] = true
end
if adding > 0 and backlog + adding > CFG_MAX_PENDING then
  return tq_error('QUEUE_FULL', tostring(backlog))
end

local out = {now}
local submitted = {}
local events = {}
for i = 0, n - 1 do
  local b = FIRST + i * W
  local id, p = ARGV[b], ARGV[b + 3]
  local tk = k_task(id)
  if redis.call('EXISTS', tk) == 1 then
    out[#out + 1] = 0
  else
    redis.call('HSET', tk, 'id', id, 'type', ARGV[b + 1], 'payload', ARGV[b + 2],
      'priority', p, 'max_retries', ARGV[b + 4], 'timeout', ARGV[b + 5],
      'metadata', ARGV[b + 6], 'attempts', 0, 'created_at', now, 'updated_at', now)
    local due = due_of(b)
    local state = 'pending'
    if due then
      redis.call('HSET', tk, 'scheduled_at', due)
    end
    if due and due > now then
      state = 'scheduled'
      redis.call('HSET', tk, 'state', 'scheduled')
      redis.call('ZADD', k_delayed(p), due, id)
      redis.call('LPUSH', K_SCHEDULE_WAKE, '1')
      redis.call('LTRIM', K_SCHEDULE_WAKE, 0, 0)
    else
      make_pending(id, p, now, nil)
    end
    out[#out + 1] = 1
    if listening() then
      events[#events + 1] = task_event('task.submitted', now, id, ARGV[b + 1], p,
        {state = state, scheduled_at = due and iso(due) or nil})
    end
    local label = ARGV[b + 1] .. '\t' .. PRIORITY_NAMES[p]
    submitted[label] = (submitted[label] or 0) + 1
  end
end
for label, n in pairs(submitted) do
  count('submitted', label, nil, n)
end
emit(events)
if idem ~= '' then
  local ids = {}
  for i = 0, n - 1 do ids[#ids + 1] = ARGV[FIRST + i * W] end
  redis.call('SET', k_idem(idem), table.concat(ids, ','), 'PX', tonumber(ARGV[3]))
end
return out
