-- workflow_create: a workflow (chains and groups, core/workflows.py) and the tasks of its
-- first steps (those that wait on no other), all or nothing.
-- KEYS[1]: the sequence key of the workflow's queue shard (routing)
-- ARGV: workflow id, owner ('' = none), structure (JSON: the request's shape, each task
--   body replaced by its step number), n, idempotency key already scoped to its caller
--   (keys.scoped; '' = none), its lifetime in ms, then per step 5 values: task id, body
--   (JSON array: type, payload json, priority, max_retries, timeout, metadata json, all
--   strings), steps it waits on (count), steps waiting on it ('j,k'), shape of its parent
--   results
-- Returns: {now}, or {'duplicate', id} when the idempotency key was used before (nothing
--   is created; id is the workflow that first call created).
-- Errors: TQ:EXISTS (the workflow id is taken), TQ:QUEUE_FULL.
local wid, owner, n, idem = ARGV[1], ARGV[2], tonumber(ARGV[4]), ARGV[5]
local FIRST = 7
if idem ~= '' then
  local prior = redis.call('GET', k_workflow_idem(idem))
  if prior then return {'duplicate', prior} end
end
local wk = k_workflow(wid)
if redis.call('EXISTS', wk) == 1 then return tq_error('EXISTS', wid) end
local ready = {}
for i = 0, n - 1 do
  if ARGV[FIRST + 5 * i + 2] == '0' then ready[#ready + 1] = i end
end
local backlog = redis.call('ZCARD', K_PENDING)
if backlog + #ready > CFG_MAX_PENDING then
  return tq_error('QUEUE_FULL', tostring(backlog))
end
local now = now_ms()
local fields = {'id', wid, 'state', 'active', 'owner', owner, 'queue', QUEUE,
  'created_at', now, 'updated_at', now, 'n', n, 'left', n, 'failing', 0,
  'structure', ARGV[3]}
for i = 0, n - 1 do
  local b = FIRST + 5 * i
  for _, v in ipairs({'id:' .. i, ARGV[b], 's:' .. i, ARGV[b + 1], 'w:' .. i, ARGV[b + 2],
      'n:' .. i, ARGV[b + 3], 'a:' .. i, ARGV[b + 4]}) do
    fields[#fields + 1] = v
  end
  if #fields >= 4000 then  -- HSET in chunks (Lua's unpack has a stack limit)
    redis.call('HSET', wk, unpack(fields))
    fields = {}
  end
end
if fields[1] then redis.call('HSET', wk, unpack(fields)) end
-- ranked by the microsecond (milliseconds with three decimals, exact enough in a double),
-- so two workflows created in one millisecond still list newest first
local _, us = clock()
redis.call('ZADD', k_workflows(), us:sub(1, -4) .. '.' .. us:sub(-3), wid)
redis.call('ZREMRANGEBYRANK', k_workflows(), 0, -10001)  -- a listing of the latest 10,000
for _, i in ipairs(ready) do wf_start(wk, i, now) end
if idem ~= '' then
  redis.call('SET', k_workflow_idem(idem), wid, 'PX', tonumber(ARGV[6]))
end
count('workflows', 'created')
emit()
return {now}
