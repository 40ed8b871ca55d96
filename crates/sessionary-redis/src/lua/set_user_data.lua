-- ARGV: 3 tag, 4 expected version, 5 sealed data. {1, v, data} written, {0, v, data} or {0} mismatch.
local dk = okey(ARGV[3], 'd')
local cur = redis.call('HMGET', dk, 'v', 'b')
local v = cur[1] or '0'
if v ~= ARGV[4] then
  if cur[1] then return {0, cur[1], cur[2]} end
  return {0}
end
local nv = redis.call('HINCRBY', dk, 'v', 1)
redis.call('HSET', dk, 'b', ARGV[5])
return {1, nv, ARGV[5]}
