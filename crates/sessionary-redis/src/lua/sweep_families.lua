-- ARGV: 3 now, 4 most to forget, 5.. family keys found by SCAN. How many were forgotten.
local now, left, n = num(ARGV[3]), num(ARGV[4]), 0
for i = 5, #ARGV do
  if n >= left then break end
  local rest = string.sub(ARGV[i], #P + 1)
  local tag, fid = string.match(rest, '^{([^}]*)}:f:(.*)$')
  if tag then
    local fk = okey(tag, 'f:' .. fid)
    local v = redis.call('HMGET', fk, 'abs', 'hs', 'sid')
    if v[1] and now >= num(v[1]) then
      for hh in string.gmatch(v[2] or '', '%S+') do route_del(P .. 'rf:' .. hh) end
      redis.call('SREM', okey(tag, 'fs:' .. v[3]), fid)
      redis.call('DEL', fk)
      n = n + 1
    end
  end
end
return n
