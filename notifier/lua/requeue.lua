-- requeue: up to 100 due retries go back on their delivery streams, each once.
-- Writes together: each due member's removal from the retries set and its new stream
-- entry (on the stream the member names, not passed as KEYS).
-- A member written before BatchEntry's flat fields ({"stream", "data"}) goes back as the
-- one `data` field it had; BatchEntry.from_fields reads both.
-- Returns how many were due.
local retries_key = KEYS[1]
local now = ARGV[1]

local due = redis.call('ZRANGEBYSCORE', retries_key, '-inf', now, 'LIMIT', 0, 100)
for _, member in ipairs(due) do
  if redis.call('ZREM', retries_key, member) == 1 then
    local item = cjson.decode(member)
    if item.fields then
      redis.call('XADD', item.stream, '*', unpack(item.fields))
    else
      redis.call('XADD', item.stream, '*', 'data', item.data)
    end
  end
end
return #due
