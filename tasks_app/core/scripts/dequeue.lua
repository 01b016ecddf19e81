-- dequeue: a worker slot takes up to n of the highest-priority pending tasks (FIFO within
-- a priority), each starting an attempt under a fresh fencing token (see take).
-- KEYS[1]: the pending set
-- ARGV: worker_id, n, then the priorities the worker serves, highest first
-- Returns: {'task', count, then per task: id, priority, fence, attempts, type, payload,
--           metadata, max_retries, timeout, queue_wait_us, started_at, parent_results}
--   queue_wait_us is the time since the task last became pending; it is also
--   stored on the task as 'wait_us'.
--       or {'empty'}, {'paused'} (worker paused), {'unregistered'}.
local prios = {}
for i = 3, #ARGV do prios[#prios + 1] = ARGV[i] end
local out = take(ARGV[1], prios, tonumber(ARGV[2]))
emit()
return out
