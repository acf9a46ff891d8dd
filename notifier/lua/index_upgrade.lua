-- index_upgrade: one of the subscriber index's sets as the previous version kept it (a
-- set) made the sorted set this one keeps, every member at score 0, 1,000 at a time.
-- Writes together: the members into the sorted set, and the old set gone.
-- Returns 1 if there was a set to move, else 0.
local before_key = KEYS[1]  -- the index as a set (the previous version's form)
local index_key = KEYS[2]  -- the index as a sorted set
if redis.call('TYPE', before_key)['ok'] ~= 'set' then return 0 end
local members = redis.call('SMEMBERS', before_key)
for i = 1, #members, 1000 do
  local scored = {}
  for j = i, math.min(i + 999, #members) do
    scored[#scored + 1] = 0
    scored[#scored + 1] = members[j]
  end
  redis.call('ZADD', index_key, unpack(scored))
end
redis.call('DEL', before_key)
return 1
