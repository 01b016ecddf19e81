-- queue_register: record a queue in the namespace's registry (run on the home shard), so
-- workers started without --queues find it.  A new queue must fit under MAX_QUEUES, and
-- one caller may bring at most MAX_QUEUES_PER_CLIENT queues into existence: the check and
-- the write are one step, so concurrent first creates cannot pass either bound.
-- KEYS[1]: the registry hash (queue -> shards)
-- ARGV: queue, shards, MAX_QUEUES, scope (the creating caller; '' trusted code, not
--       counted), MAX_QUEUES_PER_CLIENT, configured ('1': the settings name the queue; it
--       is always let in and counts against no caller), the creators hash (scope -> queues
--       it brought into existence; the home slot too)
-- Returns: {1} new, {0} known (its shard count raised to `shards` if lower), or
--          {'full', n}: MAX_QUEUES reached; {'client', n}: the caller's own bound reached
local registry, creators = KEYS[1], ARGV[7]
local queue, shards, scope = ARGV[1], tonumber(ARGV[2]), ARGV[4]
local configured = ARGV[6] == '1'
local stored = redis.call('HGET', registry, queue)
if stored then
  if tonumber(stored) < shards then  -- shards are only ever added: tasks may wait in each
    redis.call('HSET', registry, queue, shards)
  end
  return {0}
end
if not configured then
  local held = redis.call('HLEN', registry)
  if held >= tonumber(ARGV[3]) then return {'full', held} end
  if scope ~= '' then
    local made = tonumber(redis.call('HGET', creators, scope) or '0')
    if made >= tonumber(ARGV[5]) then return {'client', made} end
    redis.call('HINCRBY', creators, scope, 1)
  end
end
redis.call('HSET', registry, queue, shards)
return {1}
