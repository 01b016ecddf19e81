-- enqueue: create tasks, pending or scheduled, all or nothing.
-- KEYS[1]: the sequence key (routes the call to the namespace's slot)
-- ARGV: n, idempotency key already scoped to its caller (keys.scoped; '' = none), its
--   lifetime in ms, owner (the creating principal, stored as the task's 'owner' field
--   and carried in its events; '' = none), '1' when the namespace has per-type limits
--   (parked tasks then count toward CFG_MAX_PENDING; '' skips that read), then the tasks:
--   one JSON array (task.script_rows) of n arrays of 9 strings,
--   id, type, payload_json, priority, max_retries, timeout, metadata_json,
--   scheduled_at_ms ('' = none), delay_ms ('' = none);
--   then, only when some task is unique (unique.py), per task 2 values: its unique key
--   already scoped to the caller ('' = none) and unique_for in ms
-- Returns: {now_ms, created_1, ..., created_n}; created is 1, or 0 when a task
--   with that id already exists (so a retried call never duplicates), or the id of the
--   existing task its unique key names (nothing created for it);
--   or {'duplicate', id_1, ..., id_k} when the idempotency key was used before
--   (nothing is created; the ids are the tasks that first call created).
-- Errors: TQ:QUEUE_FULL when the pending backlog would pass CFG_MAX_PENDING.
local n = tonumber(ARGV[1])
local idem = ARGV[2]
local owner = ARGV[4] ~= '' and ARGV[4] or nil
local now, us = clock()

if idem ~= '' then
  local prior = redis.call('GET', k_idem(idem))
  if prior then
    local out = {'duplicate'}
    for id in string.gmatch(prior, '[^,]+') do out[#out + 1] = id end
    return out
  end
end
local T = cjson.decode(ARGV[6])  -- T[i] = {id, type, payload, priority, ...} (see above)
local U = 7  -- the first unique-key value

-- Unique tasks: a section only calls with unique keys have (so plain calls pay nothing).
-- A key holds the id of the task created under it until unique_for runs out (PX); it
-- blocks while that task exists and has not ended failed, dead_letter or cancelled.  A
-- key whose window comes negative (a unique_key with no unique_for) is stored as 'e:<id>'
-- for minus that long and stops blocking once its task has ended in any state, completed
-- included.  A task blocked by a key gets the existing id as its reply, and is not created.
local dup_of, unique_set = nil, nil
if #ARGV >= U then
  dup_of, unique_set = {}, {}
  local held = {}  -- key -> the task that holds it after this call
  for i = 0, n - 1 do
    local key = ARGV[U + 2 * i]
    if key ~= '' then
      local id = T[i + 1][1]
      local prior = held[key]
      if not prior then
        local stored = redis.call('GET', k_unique(key))
        if stored then
          local until_ended = string.sub(stored, 1, 2) == 'e:'
          if until_ended then stored = string.sub(stored, 3) end
          local state = redis.call('HGET', k_task(stored), 'state')
          if state and state ~= 'failed' and state ~= 'dead_letter' and state ~= 'cancelled'
              and not (until_ended and state == 'completed') then
            prior = stored
          end
        end
      end
      if prior and prior ~= id then
        dup_of[id] = prior
      elseif not prior then
        held[key] = id
        unique_set[#unique_set + 1] = {key, id, ARGV[U + 2 * i + 1]}
      end
    end
  end
end

local function due_of(t)
  local at, delay = t[8], t[9]
  if at ~= '' then return tonumber(at) end
  if delay ~= '' then return now + tonumber(delay) end
  return nil
end

local backlog = redis.call('ZCARD', K_PENDING)
-- parked tasks are pending too (see admit in lib.lua); only limited namespaces have any
local parked = ARGV[5] == '1' and redis.call('ZCARD', K_PARKED) or 0
-- One pass to decide: which ids are new (a repeated id, in the batch or in
-- Redis, is created once), and how many of them are due now.
local adding = 0
local fresh = {}
if dup_of then
  for id in pairs(dup_of) do fresh[id] = false end
end
for i = 1, n do
  local id = T[i][1]
  if fresh[id] == nil then
    fresh[id] = redis.call('EXISTS', k_task(id)) == 0
    local due = due_of(T[i])
    T[i].due = due
    if fresh[id] and (not due or due <= now) then adding = adding + 1 end
  end
end
if adding > 0 and backlog + parked + adding > CFG_MAX_PENDING then
  return tq_error('QUEUE_FULL', tostring(backlog + parked))
end

local out = {now}
local submitted = {}
local woken = {}
local pending = {}
local wake_scheduler = false
local seq = 0
if adding > 0 then seq = redis.call('INCRBY', K_SEQ, adding) - adding end
for i = 1, n do
  local t = T[i]
  local id, ttype, p = t[1], t[2], t[4]
  if not fresh[id] then
    out[#out + 1] = dup_of and dup_of[id] or 0
  else
    fresh[id] = false  -- a later copy of this id in the batch is a duplicate
    local due = t.due
    local state = (due and due > now) and 'scheduled' or 'pending'
    local fields = {'id', id, 'type', ttype, 'payload', t[3],
      'priority', p, 'max_retries', t[5], 'timeout', t[6],
      'metadata', t[7], 'attempts', 0, 'created_at', now, 'updated_at', now,
      'state', state}
    if owner then
      fields[#fields + 1] = 'owner'
      fields[#fields + 1] = owner
    end
    if due then
      fields[#fields + 1] = 'scheduled_at'
      fields[#fields + 1] = due
    end
    if state == 'scheduled' then
      redis.call('ZADD', k_delayed(p), due, id)
      wake_scheduler = true
    else
      seq = seq + 1
      fields[#fields + 1] = 'seq'
      fields[#fields + 1] = seq
      fields[#fields + 1] = 'enqueued_us'
      fields[#fields + 1] = us
      -- the score as a number: exact below 2^53 (see pending_score), and the server
      -- passes a number on in a form that reads back as the same double
      pending[#pending + 1] = (3 - tonumber(p)) * BAND + seq
      pending[#pending + 1] = id
      if #pending >= 2000 then  -- ZADD in chunks (Lua's unpack has a stack limit)
        redis.call('ZADD', K_PENDING, unpack(pending))
        pending = {}
      end
      woken[p] = (woken[p] or 0) + 1
    end
    redis.call('HSET', k_task(id), unpack(fields))
    out[#out + 1] = 1
    event({'submitted', id, ttype, p, owner or '', state, due or ''})
    local label = ttype .. '\t' .. PRIORITY_NAMES[p]
    submitted[label] = (submitted[label] or 0) + 1
  end
end
if #pending > 0 then redis.call('ZADD', K_PENDING, unpack(pending)) end
-- Wake-up tokens matter only while the queue is short: idle workers block on them, and
-- busy workers keep taking tasks until the queue is empty, tokens or not.
if backlog < CFG_NOTIFY_CAP then
  for p, k in pairs(woken) do notify(p, k) end
end
if wake_scheduler then
  redis.call('LPUSH', K_SCHEDULE_WAKE, '1')
  redis.call('LTRIM', K_SCHEDULE_WAKE, 0, 0)
end
for label, n in pairs(submitted) do
  count('submitted', label, nil, n)
end
emit()
if idem ~= '' then
  local ids = {}
  for i = 1, n do ids[i] = T[i][1] end
  redis.call('SET', k_idem(idem), table.concat(ids, ','), 'PX', tonumber(ARGV[3]))
end
if unique_set then
  for _, u in ipairs(unique_set) do
    local window = tonumber(u[3])
    if window < 0 then
      redis.call('SET', k_unique(u[1]), 'e:' .. u[2], 'PX', -window)
    else
      redis.call('SET', k_unique(u[1]), u[2], 'PX', window)
    end
  end
end
return out
