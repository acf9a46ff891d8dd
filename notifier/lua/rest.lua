-- rest: the items of a list from position `first` on: a script's variable tail of KEYS or
-- ARGV, declared `local name = rest(KEYS, i)`. No unpack, so no limit on its length.
-- Writes nothing.
local function rest(list, first)
  local items = {}
  for i = first, #list do items[#items + 1] = list[i] end
  return items
end
