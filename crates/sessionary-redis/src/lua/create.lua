-- ARGV: 3 tag, 4 id, 5 hash, 6 user or '', 7 created, 8 limit max or '',
-- 9 'evict'|'reject', 10 limit now, 11-14 eviction ending (reason, at, until,
-- restore until or ''), 15 last seen, 16 absolute expiry, 17.. field pairs.
-- {0} duplicate, {1, {evicted...}} created, {2, active} limit reached.
local tag, id, h, u, created = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if route_exists(P .. 't:' .. h) or route_exists(P .. 'i:' .. id)
  or (CL and redis.call('EXISTS', okey(tag, 's:' .. id)) == 1) then
  return {0}
end
local evicted = {}
local ix = okey(tag, 'ix')
if u ~= '' and ARGV[8] ~= '' then
  local n = num(ARGV[10])
  local live_ids = {}
  for _, sid in ipairs(redis.call('ZRANGE', ix, 0, -1)) do
    local v = redis.call('HMGET', okey(tag, 's:' .. sid), 'ls', 'idle', 'abs', 'x')
    if not v[1] then
      redis.call('ZREM', ix, sid)
    elseif not v[4] and n < math.min(num(v[1]) + num(v[2]), num(v[3])) then
      live_ids[#live_ids + 1] = sid
    end
  end
  local max = math.max(num(ARGV[8]), 1)
  if #live_ids >= max then
    if ARGV[9] == 'reject' then return {2, #live_ids} end
    for i = 1, #live_ids + 1 - max do
      local f = end_session(tag, live_ids[i], ARGV[11], ARGV[12], ARGV[13], ARGV[14])
      if f then evicted[#evicted + 1] = f end
    end
  end
end
local sk = okey(tag, 's:' .. id)
redis.call('HSET', sk, unpack(ARGV, 17))
local ttl = ttl_for(num(ARGV[16]) - num(ARGV[15]))
redis.call('PEXPIRE', sk, ttl)
route_set(P .. 't:' .. h, tag .. ' ' .. id, ttl)
route_set(P .. 'i:' .. id, tag, ttl)
snap_session(tag, id, redis.call('HGETALL', sk))
if u ~= '' then
  redis.call('ZADD', ix, created, id)
  extend(ix, ttl)
end
return {1, evicted}
