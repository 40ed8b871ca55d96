-- ARGV: 3 tag, 4 now. Live sessions, oldest first; drops index members whose session is gone.
local ix = okey(ARGV[3], 'ix')
local now = num(ARGV[4])
local out = {}
for _, id in ipairs(redis.call('ZRANGE', ix, 0, -1)) do
  local f = redis.call('HGETALL', okey(ARGV[3], 's:' .. id))
  if #f == 0 then
    redis.call('ZREM', ix, id)
  elseif live(tomap(f), now) then
    out[#out + 1] = f
  end
end
return out
