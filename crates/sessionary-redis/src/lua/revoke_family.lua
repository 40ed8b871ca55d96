-- ARGV: 3 token hash, 4 reason. The family's fields after, or {}.
local route = route_get(P .. 'rf:' .. ARGV[3])
if not route then return {} end
local tag, fid = split(route)
local fk = okey(tag, 'f:' .. fid)
if redis.call('EXISTS', fk) == 0 then return {} end
local rev = redis.call('HGET', fk, 'rev')
if not rev or rev == '' then redis.call('HSET', fk, 'rev', ARGV[4]) end
return redis.call('HGETALL', fk)
