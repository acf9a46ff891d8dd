-- jma_decide: a pending draft is approved or dismissed, once.
-- Writes together: the draft's state and the alert it became.
-- Returns 'ok', 'missing', or the state it is already in.
local draft_key = KEYS[1]
local state = ARGV[1]
local alert_id = ARGV[2]

local now_state = redis.call('HGET', draft_key, 'state')
if not now_state then return 'missing' end
if now_state ~= 'pending' then return now_state end
redis.call('HSET', draft_key, 'state', state, 'alert_id', alert_id)
return 'ok'
