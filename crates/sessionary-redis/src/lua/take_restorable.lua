-- ARGV: 3 tag, 4 now. The restorable fields if still kept (removed either way), or {}.
local rk = okey(ARGV[3], 'r')
local f = redis.call('HGETALL', rk)
if #f == 0 then return {} end
redis.call('DEL', rk)
if num(tomap(f).k) <= num(ARGV[4]) then return {} end
return f
