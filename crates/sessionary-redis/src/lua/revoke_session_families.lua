-- ARGV: 3 session id, 4 reason. The families revoked now.
local tag
if CL then tag = routed() else tag = redis.call('GET', P .. 'sf:' .. ARGV[3]) end
if not tag then return {} end
local fs = okey(tag, 'fs:' .. ARGV[3])
local out = {}
for _, fid in ipairs(redis.call('SMEMBERS', fs)) do
  local fk = okey(tag, 'f:' .. fid)
  if redis.call('EXISTS', fk) == 0 then
    redis.call('SREM', fs, fid)
  else
    local rev = redis.call('HGET', fk, 'rev')
    if not rev or rev == '' then
      redis.call('HSET', fk, 'rev', ARGV[4])
      out[#out + 1] = redis.call('HGETALL', fk)
    end
  end
end
return out
