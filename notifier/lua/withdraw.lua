-- withdraw: an alert still waiting for approval is called off (nothing went out).
-- Writes together: its status (cancelled), its alert state (withdrawn), its updated time.
-- Returns 1 if it was withdrawn, 0 if it was not waiting for approval.
local notice_key = KEYS[1]
local now = ARGV[1]

if redis.call('HGET', notice_key, 'status') ~= 'pending_approval' then return 0 end
redis.call('HSET', notice_key, 'status', 'cancelled', 'alert', 'withdrawn', 'updated', now)
return 1
