-- accept: a new announcement, stored and queued at most once per idempotency key.
-- Writes together: the notice's record (notice, kind, status, created, updated), its
-- place in the notices index, its intake entry, and the key's first answer
-- ({hash, response}, for `ttl` seconds).
-- Returns false for a new notice, the key's stored answer for a repeat, and the error
-- EXISTS if the id is taken.
local idempotency_key = KEYS[1]
local notice_key = KEYS[2]
local notices_key = KEYS[3]
local intake_key = KEYS[4]
local id = ARGV[1]
local notice = ARGV[2]
local status = ARGV[3]
local now = ARGV[4]
local body_hash = ARGV[5]
local ttl = ARGV[6]
local response = ARGV[7]
local use_idempotency = ARGV[8]  -- '1' or '0'
local kind = ARGV[9]

if use_idempotency == '1' then
  local previous = redis.call('GET', idempotency_key)
  if previous then return previous end
end
if redis.call('EXISTS', notice_key) == 1 then return redis.error_reply('EXISTS') end
redis.call('HSET', notice_key, 'notice', notice, 'kind', kind, 'status', status,
           'created', now, 'updated', now)
redis.call('ZADD', notices_key, now, id)
redis.call('XADD', intake_key, '*', 'notice', notice)
if use_idempotency == '1' then
  redis.call('SET', idempotency_key, cjson.encode({hash = body_hash, response = response}),
             'EX', ttl)
end
return false
