-- settle: a notice whose every batch has an outcome (no channel pending or still being
-- cut) is done, or failed if nothing at all could be delivered. Writes together, within
-- the script that calls it: the notice's status and its updated time. A notice that is
-- not dispatching (cancelled, or already settled) is left alone.
local function settle(progress_key, notice_key, now)
  local fields = redis.call('HGETALL', progress_key)
  local pending, sent, failed = 0, 0, 0
  for i = 1, #fields, 2 do
    local name, value = fields[i], tonumber(fields[i + 1])
    if name:sub(-8) == ':pending' or name:sub(-8) == ':cutting' then pending = pending + value
    elseif name:sub(-5) == ':sent' then sent = sent + value
    elseif name:sub(-7) == ':failed' then failed = failed + value end
  end
  if pending <= 0 and redis.call('HGET', notice_key, 'status') == 'dispatching' then
    local status = 'done'
    if sent == 0 and failed > 0 then status = 'failed' end
    redis.call('HSET', notice_key, 'status', status, 'updated', now)
  end
end
