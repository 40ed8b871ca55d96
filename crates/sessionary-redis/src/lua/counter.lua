-- ARGV: 3 id, 4 name, 5 by, 6 limit or ''. {0} gone, {1, new} incremented, {2, current} limit.
local tag = tag_of(ARGV[3])
if not tag then return {0} end
local sk = okey(tag, 's:' .. ARGV[3])
if redis.call('EXISTS', sk) == 0 then return {0} end
local f = 'n:' .. ARGV[4]
local cur = redis.call('HGET', sk, f) or '0'
if ARGV[6] ~= '' and num(cur) + num(ARGV[5]) > num(ARGV[6]) then return {2, cur} end
local new = redis.call('HINCRBY', sk, f, ARGV[5])
redis.call('HINCRBY', sk, 'v', 1)
snap_session(tag, ARGV[3], redis.call('HGETALL', sk))
return {1, new}
