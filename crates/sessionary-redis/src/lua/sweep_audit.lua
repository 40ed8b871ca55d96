-- ARGV: 3 before, 4 most. Forgets the oldest entries written before `before`; how many.
local log = P .. '{audit}:log'
local before, left, n, start = num(ARGV[3]), num(ARGV[4]), 0, 0
while n < left do
  local batch = redis.call('ZRANGE', log, start, start + 255)
  if #batch == 0 then break end
  local kept = 0
  for _, e in ipairs(batch) do
    if n >= left then break end
    local at = string.match(e, '^%d+|(%-?%d+)|')
    if num(at) < before then
      redis.call('ZREM', log, e)
      n = n + 1
    else
      kept = kept + 1
    end
  end
  start = start + kept
end
return n
