-- ARGV: 3 id, 4 now. The fields after the touch, or an empty array if missing or expired.
local id, now = ARGV[3], ARGV[4]
local tag = tag_of(id)
if not tag then return {} end
local sk = okey(tag, 's:' .. id)
local cur = redis.call('HGETALL', sk)
if #cur == 0 then return {} end
local m = tomap(cur)
if not live(m, num(now)) then return {} end
if num(now) > num(m.ls) then
  redis.call('HSET', sk, 'ls', now)
  return snap_session(tag, id, redis.call('HGETALL', sk))
end
return cur
