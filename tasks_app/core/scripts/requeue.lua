-- requeue: put a running task back unstarted (graceful shutdown): running ->
-- pending at its old place in line, the attempt not counted.
-- KEYS[1]: the pending set
-- ARGV: id, worker_id, fence
-- Returns: {'ok'} or {'already'}.  Errors: TQ:NOT_FOUND, TQ:STALE.
local id, worker, fence = ARGV[1], ARGV[2], ARGV[3]
local state, err = check_fence(id, fence)
-- A repeat after a lost reply finds the task pending under the new fence put_back gave it,
-- the caller's fence kept as 'returned_fence': what the caller asked for is done.
local back = redis.call('HMGET', k_task(id), 'state', 'returned_fence')
if back[1] == 'pending' and back[2] == fence then return {'already'} end
if err then return err end
if state ~= 'running' then return tq_error('STALE', id) end
put_back(id, worker, now_ms())
return {'ok'}
