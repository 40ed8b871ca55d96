-- ARGV: 3 token hash, 4 touch time or ''.
-- {0} missing, {1, session} found, {2, tombstone} ended.
local h, now = ARGV[3], ARGV[4]
local route = route_get(P .. 't:' .. h)
if not route then return {0} end
local tag, id = split(route)
local sk = okey(tag, 's:' .. id)
local flat = redis.call('HGETALL', sk)
if #flat > 0 then
  local m = tomap(flat)
  if m.h == h then
    if now ~= '' then
      local n = num(now)
      if live(m, n) and n - num(m.ls) >= num(m.ti) then
        redis.call('HSET', sk, 'ls', now)
        for i = 1, #flat, 2 do
          if flat[i] == 'ls' then flat[i + 1] = now end
        end
        snap_session(tag, id, flat)
      end
    end
    return {1, flat}
  end
end
local tf = redis.call('HGETALL', okey(tag, 'x:' .. h))
if #tf == 0 then return {0} end
if now ~= '' and num(now) >= num(tomap(tf).k) then return {0} end
return {2, tf}
