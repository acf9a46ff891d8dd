-- x_reserve: room in X's windows for the posts of a thread, all of them or none.
-- Writes together: the posts in the account's sorted set of posts (score: now), the
-- entries older than the 24-hour window out of it, and its expiry; when the posts do not
-- fit, only the thread's own earlier reservations are put back as they were.
-- Routine notices leave `alert_reserve` of what X said remains to alerts; an alert is
-- sent with no limit of its own (`allowed_*` that high), held only by what X said.
-- Returns {"ok", "0"}, or why not and the seconds until they would fit: {"x", s} (X said
-- so), {"15min", s} or {"24h", s}.
-- uses: rest
local posts_key = KEYS[1]  -- the account's posts, by the time each went
local blocked_key = KEYS[2]  -- X's "no posts until" (epoch seconds)
local said_key = KEYS[3]  -- what X last said of each window: `remaining|at|reset`
local now = tonumber(ARGV[1])  -- epoch seconds
local seconds_15min = tonumber(ARGV[2])
local allowed_15min = tonumber(ARGV[3])  -- the posts that window allows this notice
local seconds_24h = tonumber(ARGV[4])
local allowed_24h = tonumber(ARGV[5])
local alert_reserve = tonumber(ARGV[6])  -- posts of X's remaining to leave (0: an alert)
local posts = rest(ARGV, 7)  -- `<notice>:<post>` each

local blocked = tonumber(redis.call('GET', blocked_key) or '0')
if blocked > now then return {'x', tostring(blocked - now)} end
local held = {}  -- the thread's own earlier reservations, set aside while counting
for _, post in ipairs(posts) do
  local at = redis.call('ZSCORE', posts_key, post)
  if at then held[#held + 1] = at; held[#held + 1] = post end
end
redis.call('ZREM', posts_key, unpack(posts))
redis.call('ZREMRANGEBYSCORE', posts_key, '-inf', now - seconds_24h)
local why, wait = 'ok', 0
local windows = {{'15min', seconds_15min, allowed_15min}, {'24h', seconds_24h, allowed_24h}}
for _, window in ipairs(windows) do
  local name, seconds, allowed = unpack(window)
  local since = '(' .. tostring(now - seconds)
  local over = redis.call('ZCOUNT', posts_key, since, '+inf') + #posts - allowed
  if over > 0 then  -- room once `over` of the window's posts have left it
    local oldest = redis.call(
      'ZRANGEBYSCORE', posts_key, since, '+inf', 'WITHSCORES', 'LIMIT', over - 1, 1)
    local until_room = seconds
    if oldest[2] then until_room = tonumber(oldest[2]) + seconds - now end
    if until_room > wait then why, wait = name, until_room end
  end
end
-- X's own word, which counts what other tools on the account posted: its remaining
-- when it last answered, less the posts reserved here since
local said = redis.call('HGETALL', said_key)
for i = 1, #said, 2 do
  local remaining, at, reset = string.match(said[i + 1], '^(%d+)|([%d.]+)|([%d.]+)$')
  if remaining and tonumber(reset) > now then
    local since = redis.call('ZCOUNT', posts_key, '(' .. at, '+inf')
    local room = tonumber(remaining) - since - alert_reserve
    local until_reset = tonumber(reset) - now
    if #posts > room and until_reset > wait then why, wait = 'x', until_reset end
  end
end
if why ~= 'ok' then
  if #held > 0 then redis.call('ZADD', posts_key, unpack(held)) end
  return {why, tostring(wait)}
end
for _, post in ipairs(posts) do redis.call('ZADD', posts_key, now, post) end
redis.call('EXPIRE', posts_key, math.ceil(seconds_24h) + 60)
return {'ok', '0'}
