-- ARGV: 3 now, 4 reason ttl, 5 restore ttl, 6 most sessions to end, 7.. keys
-- found by SCAN. Ends expired sessions, forgets expired tombstones and
-- restorable data. Returns {reason, fields} pairs of the ended sessions.
local now = num(ARGV[3])
local left = num(ARGV[6])
local out = {}
for i = 7, #ARGV do
  local rest = string.sub(ARGV[i], #P + 1)
  local tag, kind, name = string.match(rest, '^{([^}]*)}:(%a+):?(.*)$')
  if kind == 's' and left > 0 then
    local sk = okey(tag, 's:' .. name)
    local v = redis.call('HMGET', sk, 'ls', 'idle', 'abs', 'u')
    if v[1] then
      local idle_end = num(v[1]) + num(v[2])
      local abs = num(v[3])
      if now >= math.min(idle_end, abs) then
        local reason, at = 'expired_absolute', v[3]
        if idle_end < abs then reason, at = 'expired_idle', string.format('%.0f', idle_end) end
        local runtil = string.format('%.0f', num(at) + num(ARGV[4]))
        local rest_until = ''
        if v[4] then rest_until = string.format('%.0f', num(at) + num(ARGV[5])) end
        local f = end_session(tag, name, reason, at, runtil, rest_until)
        if f then
          out[#out + 1] = reason
          out[#out + 1] = f
          left = left - 1
        end
      end
    end
  elseif kind == 'x' then
    local xk = okey(tag, 'x:' .. name)
    local x = redis.call('HMGET', xk, 'k', 'sid')
    if x[1] and num(x[1]) <= now then
      redis.call('DEL', xk)
      if redis.call('HGET', okey(tag, 's:' .. x[2]), 'h') ~= name then
        route_del(P .. 't:' .. name)
      end
    end
  elseif kind == 'r' then
    local rk = okey(tag, 'r')
    local k = redis.call('HGET', rk, 'k')
    if k and num(k) <= now then redis.call('DEL', rk) end
  end
end
return out
