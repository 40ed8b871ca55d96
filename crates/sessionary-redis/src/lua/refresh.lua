-- ARGV: 3 presented hash, 4 next hash, 5 next sealed, 6 now, 7 grace ms,
-- 8-11 reuse ending (reason, at, until, restore until or '').
-- {0} missing; {1, family, session} rotated; {2, family, session} retry;
-- {3, family, ended or {}} reused; {4, family} expired; {5, family} revoked;
-- {6, family, session or {}} session ended.
local h, nh, now = ARGV[3], ARGV[4], num(ARGV[6])
local route = route_get(P .. 'rf:' .. h)
if not route then return {0} end
local tag, fid = split(route)
local fk = okey(tag, 'f:' .. fid)
local ff = redis.call('HGETALL', fk)
if #ff == 0 then return {0} end
local fm = tomap(ff)
if fm.rev and fm.rev ~= '' then return {5, ff} end
if now >= num(fm.abs) then return {4, ff} end
local verdict
if fm.cur == h then
  verdict = 1
elseif fm.prev == h and now <= num(fm.rot) + num(ARGV[7]) then
  verdict = 2
else
  verdict = 3
end
if verdict == 3 then
  redis.call('HSET', fk, 'rev', 'refresh_reused')
  local ended = end_session(tag, fm.sid, ARGV[8], ARGV[9], ARGV[10], ARGV[11]) or {}
  return {3, redis.call('HGETALL', fk), ended}
end
local sk = okey(tag, 's:' .. fm.sid)
local sf = redis.call('HGETALL', sk)
if #sf == 0 or not live(tomap(sf), now) then
  redis.call('HSET', fk, 'rev', 'session_ended')
  return {6, redis.call('HGETALL', fk), sf}
end
if verdict == 1 then
  if route_exists(P .. 'rf:' .. nh) then
    return redis.error_reply('rotation to a token hash already in use')
  end
  redis.call('HINCRBY', fk, 'gen', 1)
  redis.call('HSET', fk, 'prev', fm.cur, 'cur', nh, 'rot', ARGV[6], 'succ', ARGV[5],
    'hs', fm.hs .. ' ' .. nh)
  route_set(P .. 'rf:' .. nh, tag .. ' ' .. fid, ttl_for(num(fm.abs) - now))
end
if now > num(tomap(sf).ls) then
  redis.call('HSET', sk, 'ls', ARGV[6])
  sf = snap_session(tag, fm.sid, redis.call('HGETALL', sk))
end
return {verdict, redis.call('HGETALL', fk), sf}
