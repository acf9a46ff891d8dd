-- cancel: an announcement not yet dispatched is called off.
-- Writes together: the notice's status (cancelled) and updated time, and its removal
-- from the scheduled set.
-- Returns 'ok', 'missing' (also for an alert: the emergency desk calls those off), or
-- the status that forbids cancelling.
local notice_key = KEYS[1]
local scheduled_key = KEYS[2]
local now = ARGV[1]
local id = ARGV[2]

local status = redis.call('HGET', notice_key, 'status')
if not status or redis.call('HGET', notice_key, 'kind') ~= 'announcement' then
  return 'missing'
end
if status ~= 'scheduled' and status ~= 'queued' then return status end
redis.call('HSET', notice_key, 'status', 'cancelled', 'updated', now)
redis.call('ZREM', scheduled_key, id)
return 'ok'
