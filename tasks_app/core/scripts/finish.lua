-- finish: a worker slot records the outcomes of the attempts it ran (any number) and
-- takes its next tasks, in one script: a busy slot costs one round trip per batch.
-- KEYS[1]: the pending set
-- ARGV: worker_id, mode, random seed,
--   n, then n (metrics field, delta) pairs the worker tallied before (its tally),
--   m, then m pairs that count this call's completions (applied only if every one of them
--     is acknowledged now; else the worker tallies those that were),
--   k, then per outcome 5 values: id, fence, kind ('ok' | 'retry' | 'permanent' |
--     'requeue': never started, back in line uncounted), result json or error, run time
--     in seconds ('' unknown),
--   want (tasks to take next; 0: none), then the priorities to take them from.
--   mode 'count': completions are counted here; 'now': apply the pairs; 'idle': apply them
--   only when no task is handed out (the slot goes idle), else the worker keeps them.
-- Returns: {flushed (0|1), {per outcome: {'ok', started_at, completed_at} | {'already'} |
--   {'stale'} (lease taken over: outcome discarded) | {'missing'} | the fail script's reply |
--   {'requeued'}}, the dequeue script's reply (or {'none'} when want is 0)}
local worker, mode = ARGV[1], ARGV[2]
math.randomseed(tonumber(ARGV[3]))
local own_at = 5 + 2 * tonumber(ARGV[4])
local k_at = own_at + 1 + 2 * tonumber(ARGV[own_at])
local k = tonumber(ARGV[k_at])
local want_at = k_at + 1 + 5 * k
local results = {}
local all_acked = true
for i = 0, k - 1 do
  local b = k_at + 1 + 5 * i
  local id, fence, kind, value, spent = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local r
  if kind == 'ok' then
    r = complete(id, worker, fence, value, spent, mode == 'count')
    if r[1] ~= 'ok' then all_acked = false end
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
local want = tonumber(ARGV[want_at])
local nxt = {'none'}
if want > 0 then
  local prios = {}
  for i = want_at + 1, #ARGV do prios[#prios + 1] = ARGV[i] end
  nxt = take(worker, prios, mode ~= 'count', want)
end
local flushed = 0
if mode ~= 'idle' or nxt[1] ~= 'task' then
  apply_tally(ARGV, 4)
  if all_acked then apply_tally(ARGV, own_at) end
  flushed = 1
end
emit()
return {flushed, results, nxt}
