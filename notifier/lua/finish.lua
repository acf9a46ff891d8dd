-- finish: every share of a notice is cut.
-- Writes together: the end of each cut channel's `cutting` flag in the progress, the
-- removal of the cut's scratch sets (seen, carry, a drill's audience), and, if every batch
-- was delivered meanwhile, the notice's settling (settle.lua).
-- uses: rest, settle
local progress_key = KEYS[1]
local notice_key = KEYS[2]
local scratch_keys = rest(KEYS, 3)
local now = ARGV[1]
local channels = rest(ARGV, 2)

for _, channel in ipairs(channels) do redis.call('HDEL', progress_key, channel .. ':cutting') end
-- UNLINK: a whole ward's seen set is freed after the call, not inside it
for _, key in ipairs(scratch_keys) do redis.call('UNLINK', key) end
settle(progress_key, notice_key, now)
