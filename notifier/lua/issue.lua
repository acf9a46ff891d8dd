-- issue: a new alert (or an update or all-clear of an active one), stored and queued, or
-- held for approval; at most once per idempotency key.
-- Writes together: the alert's record (notice, kind, status, created, updated,
-- requested_by, references, its alert state), its place in the notices index, the CAP
-- message it came from, the key's first answer ({hash, response}, for `ttl` seconds);
-- unless it waits for approval, also the referenced alert's new state (superseded or
-- cancelled, superseded_by) and its entry on the urgent intake stream.
-- Returns {'ok'}, {'replay', the key's stored answer}, {'cap', the alert the same CAP
-- message became}, {'exists'}, {'missing'} (the referenced alert is unknown) or
-- {'state', its state} (it is no longer active).
local notice_key = KEYS[1]
local notices_key = KEYS[2]
local intake_key = KEYS[3]
local referenced_key = KEYS[4]  -- the alert's own key when it references none
local cap_key = KEYS[5]
local idempotency_key = KEYS[6]
local id = ARGV[1]
local notice = ARGV[2]
local status = ARGV[3]  -- queued or pending_approval
local now = ARGV[4]
local referenced = ARGV[5]  -- '' for none
local referenced_next = ARGV[6]  -- what the referenced alert becomes
local requested_by = ARGV[7]
local own_state = ARGV[8]
local record_cap = ARGV[9]  -- '1' or '0'
local use_idempotency = ARGV[10]  -- '1' or '0'
local body_hash = ARGV[11]
local ttl = ARGV[12]
local response = ARGV[13]

if use_idempotency == '1' then
  local previous = redis.call('GET', idempotency_key)
  if previous then return {'replay', previous} end
end
if record_cap == '1' then
  local known = redis.call('GET', cap_key)
  if known then return {'cap', known} end
end
if redis.call('EXISTS', notice_key) == 1 then return {'exists'} end
if referenced ~= '' then
  if redis.call('HGET', referenced_key, 'kind') ~= 'alert' then return {'missing'} end
  local state = redis.call('HGET', referenced_key, 'alert') or 'active'
  if state ~= 'active' then return {'state', state} end
end
redis.call('HSET', notice_key, 'notice', notice, 'kind', 'alert', 'status', status,
           'created', now, 'updated', now, 'requested_by', requested_by,
           'references', referenced, 'alert', own_state)
redis.call('ZADD', notices_key, now, id)
if record_cap == '1' then redis.call('SET', cap_key, id) end
if use_idempotency == '1' then
  redis.call('SET', idempotency_key, cjson.encode({hash = body_hash, response = response}),
             'EX', ttl)
end
if status == 'pending_approval' then return {'ok'} end
if referenced ~= '' then
  redis.call('HSET', referenced_key, 'alert', referenced_next, 'superseded_by', id,
             'updated', now)
end
redis.call('XADD', intake_key, '*', 'notice', notice)
return {'ok'}
