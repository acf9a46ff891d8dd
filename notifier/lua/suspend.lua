-- suspend: subscribers of one channel taken out of its audience (their address bounced
-- or was refused), each once; their data stays.
-- Writes together, for each id not suspended yet whose hash exists: the id into the
-- channel's suspended set, out of the channel's index and its language's set, and the
-- census count of its choices (channel|areas|topics|language) one less.
-- Returns how many were newly suspended.
-- uses: rest
local suspended_key = KEYS[1]  -- the channel's suspended ids
local index_key = KEYS[2]  -- the channel's index (a sorted set)
local census_key = KEYS[3]  -- choices → how many subscribers hold them
local set_and_hash_keys = rest(KEYS, 4)  -- each language's set (the ward's, in order), then each id's hash
local language_count = tonumber(ARGV[1])  -- how many of those sets there are
local languages_and_ids = rest(ARGV, 2)  -- the ward's languages, then the ids (as their hashes)

local reach = {}  -- a language → the channel's set of its readers
for j = 1, language_count do reach[languages_and_ids[j]] = set_and_hash_keys[j] end
local function sorted(codes)  -- as choices() writes them: space-separated, sorted
  local list = {}
  for code in string.gmatch(codes or '', '%S+') do list[#list + 1] = code end
  table.sort(list)
  return table.concat(list, ' ')
end
local done = 0
for i = language_count + 1, #languages_and_ids do
  local id = languages_and_ids[i]
  local hash = set_and_hash_keys[i]
  local fields = redis.call('HMGET', hash, 'channel', 'areas', 'topics', 'language')
  if fields[1] and redis.call('SADD', suspended_key, id) == 1 then
    redis.call('ZREM', index_key, id)
    local own = reach[fields[4] or 'ja']
    if own then redis.call('ZREM', own, id) end
    local signature = fields[1] .. '|' .. sorted(fields[2]) .. '|' .. sorted(fields[3]) .. '|'
      .. (fields[4] or 'ja')
    redis.call('HINCRBY', census_key, signature, -1)
    done = done + 1
  end
end
return done
