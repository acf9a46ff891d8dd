-- retry: a batch that failed for now waits for its next attempt.
-- Writes together: the batch in the retries set (member: its stream and BatchEntry fields,
-- score: when it is due), the acknowledgement and deletion of its stream entry.
local retries_key = KEYS[1]
local stream_key = KEYS[2]
local member = ARGV[1]  -- JSON {"stream": …, "fields": [name, value, …]}
local due = ARGV[2]
local group = ARGV[3]
local entry_id = ARGV[4]

redis.call('ZADD', retries_key, due, member)
redis.call('XACK', stream_key, group, entry_id)
redis.call('XDEL', stream_key, entry_id)
return 1
