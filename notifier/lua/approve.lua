-- approve: a second member of the emergency desk releases an alert held for approval.
-- Writes together: the alert's status (queued), its alert state (active, or all-clear),
-- approved_by and updated time; the referenced alert's new state (superseded or
-- cancelled) and superseded_by; the alert's entry on the urgent intake stream.
-- Returns 'ok', 'missing', 'same_person', 'retry' (its references changed since they were
-- read), 'ref_<state>' (the referenced alert is no longer active), or its status.
local notice_key = KEYS[1]
local intake_key = KEYS[2]
local referenced_key = KEYS[3]  -- the alert's own key when it references none
local approver = ARGV[1]
local now = ARGV[2]
local referenced = ARGV[3]  -- '' for none
local id = ARGV[4]

local status = redis.call('HGET', notice_key, 'status')
if not status then return 'missing' end
if status ~= 'pending_approval' then return status end
if redis.call('HGET', notice_key, 'requested_by') == approver then return 'same_person' end
if (redis.call('HGET', notice_key, 'references') or '') ~= referenced then return 'retry' end
local notice = redis.call('HGET', notice_key, 'notice')
local own = 'active'
if referenced ~= '' then
  local state = redis.call('HGET', referenced_key, 'alert') or 'active'
  if state ~= 'active' then return 'ref_' .. state end
  local next_state = 'superseded'
  if cjson.decode(notice)['type'] == 'cancel' then next_state = 'cancelled'; own = 'all-clear' end
  redis.call('HSET', referenced_key, 'alert', next_state, 'superseded_by', id, 'updated', now)
end
redis.call('HSET', notice_key, 'status', 'queued', 'alert', own, 'approved_by', approver,
           'updated', now)
redis.call('XADD', intake_key, '*', 'notice', notice)
return 'ok'
