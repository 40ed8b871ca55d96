-- ARGV: 3.. pairs of (at, entry JSON). Each gets the next sequence number.
local log, seqk = P .. '{audit}:log', P .. '{audit}:seq'
for i = 3, #ARGV, 2 do
  local seq = redis.call('INCR', seqk)
  redis.call('ZADD', log, seq, seq .. '|' .. ARGV[i] .. '|' .. ARGV[i + 1])
end
return #ARGV
