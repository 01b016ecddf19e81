-- progress: a running attempt reports how far it got (fenced).
-- KEYS[1]: the task's record (routes the call to its queue shard)
-- ARGV: id, fence, done, total ('' = unknown), message (already bounded and cleaned)
-- Stores the task's 'progress' field as JSON {done, total, message, updated_at, attempt}
-- and sends a task.progress event.
-- Returns: updated_at (ms).
-- Errors: TQ:NOT_FOUND, TQ:STALE (the attempt's fence no longer matches, or the task is
--   no longer running: its lease was lost).
local id, fence = ARGV[1], ARGV[2]
local tk = k_task(id)
local f = redis.call('HMGET', tk, 'state', 'fence', 'type', 'priority', 'owner', 'attempts')
if not f[1] then return tq_error('NOT_FOUND', id) end
if f[2] ~= fence or f[1] ~= 'running' then return tq_error('STALE', id) end
local now = now_ms()
local record = {done = tonumber(ARGV[3]), message = ARGV[5], updated_at = now,
  attempt = tonumber(f[6])}
if ARGV[4] ~= '' then record.total = tonumber(ARGV[4]) end
redis.call('HSET', tk, 'progress', cjson.encode(record))
event({'progress', id, f[3], f[4], f[5] or '', ARGV[3], ARGV[4], ARGV[5]})
emit()
return now
