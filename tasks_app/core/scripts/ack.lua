-- ack: a running attempt succeeded: running -> completed (counted here).
-- KEYS[1]: the pending set
-- ARGV: id, worker_id, fence, result_json, handler run time in seconds
-- Returns: {'ok', started_at, completed_at} or {'already'} when this very
--   attempt was acknowledged before (a retried call after a lost reply).
-- Errors: TQ:NOT_FOUND, TQ:STALE (the lease was taken over: fencing).
local out = complete(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
emit()
if out[1] == 'stale' then return tq_error('STALE', ARGV[1]) end
if out[1] == 'missing' then return tq_error('NOT_FOUND', ARGV[1]) end
return out
