-- x_block: X said no more posts until a time; every worker waits until then.
-- Writes together: X's "no posts until" and its expiry at that time, unless the time it
-- holds is as late or later (then nothing).
-- Returns 1 if it was set, 0 if not.
local blocked_key = KEYS[1]
local until_seconds = ARGV[1]  -- epoch seconds, kept as sent
local until_ms = ARGV[2]  -- the same in milliseconds: when the key expires

if tonumber(until_seconds) <= tonumber(redis.call('GET', blocked_key) or '0') then return 0 end
redis.call('SET', blocked_key, until_seconds, 'PXAT', until_ms)
return 1
