-- rate: the next slot of a rate limit every process shares (GCRA: one key, Redis's clock).
-- Writes together: the limit's theoretical arrival time (the slot after this one) and its
-- expiry.
-- Returns {the µs to wait for the slot, the slot (Redis time, µs)}.
local limit_key = KEYS[1]
local interval_us = tonumber(ARGV[1])  -- between two slots
local burst_us = tonumber(ARGV[2])  -- how far ahead of its time a slot may be taken

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', limit_key) or '0')
if tat < now then tat = now end
local wait = tat - now - burst_us
if wait < 0 then wait = 0 end
local ttl = math.ceil((tat + interval_us - now) / 1000) + 1000
redis.call('SET', limit_key, string.format('%d', tat + interval_us), 'PX', ttl)
return {wait, string.format('%d', now + wait)}
