-- ARGV: 3 id. The session's fields, or an empty array.
local tag = tag_of(ARGV[3])
if not tag then return {} end
return redis.call('HGETALL', okey(tag, 's:' .. ARGV[3]))
