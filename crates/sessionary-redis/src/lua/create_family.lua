-- ARGV: 3 session id, 4 family id, 5 token hash, 6 user, 7 created, 8 absolute
-- expiry, 9.. field pairs. {0} session gone, {1} created, {2} duplicate.
local sid, fid, h = ARGV[3], ARGV[4], ARGV[5]
local tag = tag_of(sid)
if not tag then return {0} end
local f = redis.call('HGETALL', okey(tag, 's:' .. sid))
if #f == 0 then return {0} end
local m = tomap(f)
if m.u ~= ARGV[6] or not live(m, num(ARGV[7])) then return {0} end
local fk = okey(tag, 'f:' .. fid)
if redis.call('EXISTS', fk) == 1 or route_exists(P .. 'rf:' .. h) then return {2} end
local ttl = ttl_for(num(ARGV[8]) - num(ARGV[7]))
redis.call('HSET', fk, unpack(ARGV, 9))
redis.call('PEXPIRE', fk, ttl)
route_set(P .. 'rf:' .. h, tag .. ' ' .. fid, ttl)
local fs = okey(tag, 'fs:' .. sid)
redis.call('SADD', fs, fid)
extend(fs, ttl)
if not CL then
  local sf = P .. 'sf:' .. sid
  redis.call('SET', sf, tag)
  extend(sf, ttl)
end
return {1}
