-- breaker: one more failed batch of a channel in a row.
-- Writes together: the channel's count of failures in a row and its expiry.
-- Returns the failures in a row.
local breaker_key = KEYS[1]
local seconds = ARGV[1]  -- how long a failure is remembered

local n = redis.call('INCR', breaker_key)
redis.call('EXPIRE', breaker_key, seconds)
return n
