-- cut: one step of the walk that cuts a (channel, language) share of a notice's audience
-- into batches, straight from the subscriber index (notifier/cutting.py).
-- Writes together: the batches cut (entries of the delivery stream, in BatchEntry's flat
-- fields), the share's count of batches and the walk's position (the cut hash), the ids
-- taken (the seen set: no id is cut twice), the ids short of a full batch (the carry), and
-- the recipients and pending counters of the notice's progress.
-- A function of what it reads (no random pick): done again on a replica that lost its
-- last writes, it cuts the same batches with the same numbers (each share numbers its
-- own batches, so the order in which shares are walked does not matter).
-- Returns {batches cut, 1 if the walk of this source is finished else 0}.
-- uses: rest
local source_key = KEYS[1]  -- the index set walked, in the order of its ids
local seen_key = KEYS[2]
local carry_key = KEYS[3]
local stream_key = KEYS[4]
local cut_key = KEYS[5]
local progress_key = KEYS[6]
local check_keys = rest(KEYS, 7)  -- the sets of each check, one check after another
local notice = ARGV[1]
local channel = ARGV[2]
local lang = ARGV[3]
local kind = ARGV[4]
local size = tonumber(ARGV[5])  -- a full batch
local most = tonumber(ARGV[6])  -- batches this call may cut
local position_field = ARGV[7]
local last_source = ARGV[8]  -- '1': the share's last source, so a short batch goes out
local steps_per_call = tonumber(ARGV[9])  -- pages one call may walk
local page_size = tonumber(ARGV[10])
local number_offset = tonumber(ARGV[11])  -- this share's batches are numbered
local number_step = tonumber(ARGV[12])  -- offset, offset + step, …; step 0: one counter
local check_sizes = rest(ARGV, 13)  -- how many of check_keys each check has

local position = redis.call('HGET', cut_key, position_field) or '-'
if position == 'done' then return {0, 1} end
if position:sub(1, 1) ~= '(' then position = '-' end  -- anything else: from the start
local checks, k = {}, 1  -- a member must be in one set of every check
for c = 1, #check_sizes do
  local sets = {}
  for i = 1, tonumber(check_sizes[c]) do sets[i] = check_keys[k]; k = k + 1 end
  checks[c] = sets
end
local function flags(command, key, members)  -- a command per 1,000: Lua's stack is small
  local found = {}
  for i = 1, #members, 1000 do
    local part = redis.call(command, key, unpack(members, i, math.min(i + 999, #members)))
    if type(part) == 'table' then  -- SMISMEMBER's 1/0, ZMSCORE's score/false; not SADD's count
      for j = 1, #part do found[i + j - 1] = part[j] ~= 0 and part[j] ~= false end
    end
  end
  return found
end
local function wanted(members)  -- those in a set of every check, not seen before
  local picked = members  -- a page of a sorted set: each member once
  if #checks > 0 then
    local keep = {}
    for i = 1, #members do keep[i] = true end
    for _, sets in ipairs(checks) do
      local found = {}
      for _, key in ipairs(sets) do
        local member_of = flags('ZMSCORE', key, members)
        for i = 1, #members do found[i] = found[i] or member_of[i] end
      end
      for i = 1, #members do keep[i] = keep[i] and found[i] end
    end
    picked = {}
    for i = 1, #members do
      if keep[i] then picked[#picked + 1] = members[i] end
    end
  end
  local seen, new = flags('SMISMEMBER', seen_key, picked), {}
  for i = 1, #picked do
    if not seen[i] then new[#new + 1] = picked[i] end
  end
  flags('SADD', seen_key, new)
  return new
end
if redis.call('TYPE', carry_key)['ok'] == 'set' then  -- a cut begun by the version before
  local held = redis.call('SMEMBERS', carry_key)
  redis.call('DEL', carry_key)
  for _, member in ipairs(held) do redis.call('ZADD', carry_key, 0, member) end
end
local batch = {}  -- the carry first, in the order of its ids: a call done again after a
for i, v in ipairs(redis.call('ZPOPMIN', carry_key, size)) do  -- failover cuts the same
  if i % 2 == 1 then batch[#batch + 1] = v end  -- batches (the same retry keys, the same ids)
end
local cut, recipients = 0, 0
local function emit()  -- a BatchEntry (notifier/states.py), field by field
  table.sort(batch)
  local n
  if number_step > 0 then  -- the share's own count: the same numbers however often it is cut
    local k = redis.call('HINCRBY', cut_key, 'n:' .. channel .. ':' .. lang, 1) - 1
    n = number_offset + number_step * k
  else  -- a share planned by the version before: the channel's one counter, as then
    n = redis.call('HINCRBY', cut_key, channel, 1) - 1
  end
  redis.call('XADD', stream_key, '*', 'notice', notice, 'kind', kind, 'channel', channel,
             'lang', lang, 'n', n, 'recipients', cjson.encode(batch), 'areas', '[]',
             'size', #batch, 'attempt', 1)
  cut = cut + 1
  recipients = recipients + #batch
  batch = {}
end
local steps, finished = 0, false
while not finished do
  if #batch >= size then emit() end
  if cut >= most or steps >= steps_per_call then break end
  local page = redis.call('ZRANGE', source_key, position, '+', 'BYLEX', 'LIMIT', 0, page_size)
  steps = steps + 1
  if #page > 0 then position = '(' .. page[#page] end
  finished = #page < page_size
  for _, member in ipairs(wanted(page)) do
    batch[#batch + 1] = member
    if #batch == size then emit() end
  end
end
if finished and last_source == '1' and #batch > 0 then emit() end
if #batch > 0 then
  local scored = {}
  for _, member in ipairs(batch) do scored[#scored + 1] = 0; scored[#scored + 1] = member end
  redis.call('ZADD', carry_key, unpack(scored))
end
redis.call('HSET', cut_key, position_field, finished and 'done' or position)
if recipients > 0 then
  redis.call('HINCRBY', progress_key, channel .. ':recipients', recipients)
  redis.call('HINCRBY', progress_key, channel .. ':pending', recipients)
end
return {cut, finished and 1 or 0}
