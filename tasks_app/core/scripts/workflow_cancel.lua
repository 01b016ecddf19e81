-- workflow_cancel: active | failed -> cancelled; the workflow's steps not yet started are
-- cancelled in the same step (running ones finish and start nothing after them).
-- KEYS[1]: the sequence key of the workflow's queue shard (routing)
-- ARGV: workflow id
-- Returns: {the state it had, '' when there is no such workflow}.
local state = wf_cancel(ARGV[1], now_ms())
emit()
return {state or ''}
