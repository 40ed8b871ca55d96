-- ARGV: 3 id, 4 expected version, 5 new token hash or '' (update), 6-10
-- tombstone of the old hash (sid, user or '', reason, at, until; rotate only),
-- 11 last seen, 12 absolute expiry, 13.. field pairs.
-- {0} gone, {1, fields} written, {2, fields} version conflict.
local id = ARGV[3]
local tag = tag_of(id)
if not tag then return {0} end
local sk = okey(tag, 's:' .. id)
local cur = redis.call('HGETALL', sk)
if #cur == 0 then return {0} end
local m = tomap(cur)
if m.v ~= ARGV[4] then return {2, cur} end
local ttl = ttl_for(num(ARGV[12]) - math.max(num(ARGV[11]), num(m.ls)))
local nh = ARGV[5]
if nh ~= '' then
  if nh == m.h or route_exists(P .. 't:' .. nh) then
    return redis.error_reply('rotation to a token hash already in use')
  end
  local xk = okey(tag, 'x:' .. m.h)
  redis.call('DEL', xk)
  redis.call('HSET', xk, 'sid', ARGV[6], 'r', ARGV[8], 'at', ARGV[9], 'k', ARGV[10])
  if ARGV[7] ~= '' then redis.call('HSET', xk, 'u', ARGV[7]) end
  local xttl = ttl_for(num(ARGV[10]) - num(ARGV[9]))
  redis.call('PEXPIRE', xk, xttl)
  route_extend(P .. 't:' .. m.h, xttl)
  snap(tag, id, m.h, 'x', redis.call('HGETALL', xk))
  redis.call('HSET', sk, 'h', nh)
  route_set(P .. 't:' .. nh, tag .. ' ' .. id, ttl)
end
redis.call('HSET', sk, unpack(ARGV, 13))
if num(ARGV[11]) > num(m.ls) then redis.call('HSET', sk, 'ls', ARGV[11]) end
redis.call('HINCRBY', sk, 'v', 1)
extend(sk, ttl)
route_extend(P .. 'i:' .. id, ttl)
local h = redis.call('HGET', sk, 'h')
route_extend(P .. 't:' .. h, ttl)
if m.u then extend(okey(tag, 'ix'), ttl) end
-- The third element (the hash the session had) is for the Cluster caller's route upkeep.
return {1, snap_session(tag, id, redis.call('HGETALL', sk)), m.h}
