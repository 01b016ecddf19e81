-- finish: a worker slot records the outcomes of the attempts it ran (any number) and
-- takes its next tasks, in one script: a busy slot costs one round trip per batch, and the
-- batch's metrics cost one HINCRBY per distinct field.
-- KEYS[1]: the pending set
-- ARGV: worker_id, random seed,
--   k, then per outcome 5 values: id, fence, kind ('ok' | 'retry' | 'permanent' |
--     'requeue': never started, back in line uncounted), result json or error, run time
--     in seconds ('' unknown),
--   want (tasks to take next; 0: none), then the priorities to take them from.
-- Returns: {{per outcome: {'ok', started_at, completed_at} | {'already'} (recorded
--   before: a retried call) | {'stale'} (lease taken over: outcome discarded) | {'missing'} |
--   the fail script's reply | {'requeued'}}, the dequeue script's reply (or {'none'} when
--   want is 0)}
local worker = ARGV[1]
math.randomseed(tonumber(ARGV[2]))
local k = tonumber(ARGV[3])
local want_at = 4 + 5 * k
local results = {}
local released = {}
for i = 0, k - 1 do
  local b = 4 + 5 * i
  local id, fence, kind, value, spent = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local r
  if kind == 'ok' then
    r = complete(id, worker, fence, value, spent, released)
  else
    local state = redis.call('HMGET', k_task(id), 'state', 'fence')
    if not state[1] then
      r = {'missing'}
    elseif state[2] ~= fence then
      r = {'stale'}
    elseif state[1] == 'completed' or state[1] == 'pending' then
      r = {'stale'}
    elseif state[1] ~= 'running' then
      r = {'already', state[1]}
    elseif kind == 'requeue' then
      put_back(id, worker, now_ms())
      r = {'requeued'}
    else
      if spent ~= '' then
        observe('duration', BUCKETS_DURATION, redis.call('HGET', k_task(id), 'type'),
          tonumber(spent))
      end
      r = fail_attempt(id, now_ms(), value, kind)
    end
  end
  results[#results + 1] = r
end
if released[1] then redis.call('SREM', k_worker_active(worker), unpack(released)) end
local want = tonumber(ARGV[want_at])
local nxt = {'none'}
if want > 0 then
  local prios = {}
  for i = want_at + 1, #ARGV do prios[#prios + 1] = ARGV[i] end
  nxt = take(worker, prios, want)
end
emit()
return {results, nxt}
