-- jma_take: a JMA telegram is taken once, and the draft it makes (if any) with it.
-- Writes together: the telegram's seen mark (kept seen_ttl seconds), the draft (its JSON,
-- state pending), its place in the drafts' list, and the event's pointer to its latest
-- draft (gone once the event's all-clear is drafted).
-- Returns 'repeat' (seen before), 'retry' (the event moved on since it was read: draft
-- again), 'none' (seen, no draft) or 'draft'.
local seen_key = KEYS[1]
local event_key = KEYS[2]
local drafts_key = KEYS[3]
local draft_key = KEYS[4]
local draft_id = ARGV[1]
local draft = ARGV[2]
local now = ARGV[3]
local earlier = ARGV[4]
local close = ARGV[5]
local seen_ttl = ARGV[6]

if redis.call('EXISTS', seen_key) == 1 then return 'repeat' end
local pointer = redis.call('GET', event_key) or ''
if draft_id ~= '' and pointer ~= earlier then return 'retry' end
redis.call('SET', seen_key, draft_id, 'EX', tonumber(seen_ttl))
if draft_id == '' then return 'none' end
redis.call('HSET', draft_key, 'draft', draft, 'state', 'pending')
redis.call('ZADD', drafts_key, tonumber(now), draft_id)
if close == 'close' then redis.call('DEL', event_key) else redis.call('SET', event_key, draft_id) end
return 'draft'
