-- record: a batch's outcome, counted once however often the batch was delivered.
-- Writes together: the batch number in the done set, the notice's sent/failed/pending
-- counters, the service's stats, the batch's log line, its failed recipients (the last
-- 1,000 of the notice), the reset of the channel's breaker, the acknowledgement and
-- deletion of its stream entry, and the notice's settling (settle.lua).
-- A batch already in the done set is only acknowledged and deleted.
-- Returns 1 if it was counted, 0 if it had been already, -1 if this Redis does not know
-- its entry (nothing written).
-- uses: rest, settle
local done_key = KEYS[1]
local progress_key = KEYS[2]
local notice_key = KEYS[3]
local stream_key = KEYS[4]
local stats_key = KEYS[5]
local failures_key = KEYS[6]
local batch_log_key = KEYS[7]
local breaker_key = KEYS[8]
local batch = ARGV[1]  -- its number
local channel = ARGV[2]
local sent = ARGV[3]
local failed = ARGV[4]
local size = ARGV[5]
local group = ARGV[6]
local entry_id = ARGV[7]
local now = ARGV[8]
local batch_log = ARGV[9]  -- JSON
local failures = rest(ARGV, 10)  -- JSON each

if redis.call('SISMEMBER', done_key, batch) == 1 then
  redis.call('XACK', stream_key, group, entry_id)
  redis.call('XDEL', stream_key, entry_id)
  return 0
end
-- an entry this Redis does not hold as delivered: the writes that cut it (or read it) were
-- lost with a Redis that restarted or failed over. Nothing is counted: the cut, done
-- again, makes the same batch with the same number (and LINE retry key), which is
-- delivered and counted then; counting this one would settle the notice before its
-- audience is cut.
if #redis.call('XPENDING', stream_key, group, entry_id, entry_id, 1) == 0 then return -1 end
redis.call('SADD', done_key, batch)
redis.call('DEL', breaker_key)
redis.call('HINCRBY', progress_key, channel .. ':sent', sent)
redis.call('HINCRBY', progress_key, channel .. ':failed', failed)
redis.call('HINCRBY', progress_key, channel .. ':pending', 0 - tonumber(size))
redis.call('HINCRBY', stats_key, channel .. ':sent', sent)
redis.call('HINCRBY', stats_key, channel .. ':failed', failed)
redis.call('HSET', batch_log_key, channel .. ':' .. batch, batch_log)
for _, failure in ipairs(failures) do redis.call('RPUSH', failures_key, failure) end
if #failures > 0 then redis.call('LTRIM', failures_key, -1000, -1) end
redis.call('XACK', stream_key, group, entry_id)
redis.call('XDEL', stream_key, entry_id)
settle(progress_key, notice_key, now)
return 1
