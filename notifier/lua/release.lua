-- release: the scheduler puts up to 100 due notices back on the intake stream, once.
-- Writes together: each due id's removal from the scheduled set and, for a notice still
-- scheduled, its intake entry. (A cancelled one just leaves the set.) The notices' keys
-- are read by prefix, not passed as KEYS.
-- Returns the ids released.
local scheduled_key = KEYS[1]
local intake_key = KEYS[2]
local now = ARGV[1]
local notice_prefix = ARGV[2]

local due = redis.call('ZRANGEBYSCORE', scheduled_key, '-inf', now, 'LIMIT', 0, 100)
local released = {}
for _, id in ipairs(due) do
  redis.call('ZREM', scheduled_key, id)
  local key = notice_prefix .. id
  if redis.call('HGET', key, 'status') == 'scheduled' then
    redis.call('XADD', intake_key, '*', 'notice', redis.call('HGET', key, 'notice'))
    table.insert(released, id)
  end
end
return released
