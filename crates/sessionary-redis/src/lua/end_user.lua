-- ARGV: 3 tag, 4 except id or '', 5-8 ending. The removed sessions' fields.
local tag = ARGV[3]
local out = {}
for _, id in ipairs(redis.call('ZRANGE', okey(tag, 'ix'), 0, -1)) do
  if id ~= ARGV[4] then
    local f = end_session(tag, id, ARGV[5], ARGV[6], ARGV[7], ARGV[8])
    if f then out[#out + 1] = f end
  end
end
return out
