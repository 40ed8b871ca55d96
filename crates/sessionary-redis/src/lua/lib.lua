-- Shared by every script (prepended). ARGV[1] = key prefix, ARGV[2] = GC grace (ms).
local P = ARGV[1]
local GRACE = tonumber(ARGV[2])
local MAXTTL = 400 * 86400000
local function okey(tag, suffix) return P .. '{' .. tag .. '}:' .. suffix end
local function num(s) return tonumber(s) end
-- A key TTL (ms) for something that ends `span` ms from now: only garbage
-- collection, the decisions read the timestamps in the records.
local function ttl_for(span)
  local t = span + GRACE
  if t < GRACE then t = GRACE end
  if t > MAXTTL then t = MAXTTL end
  return math.floor(t)
end
local function extend(key, ttl)
  local cur = redis.call('PTTL', key)
  if cur == -1 or (cur >= 0 and cur < ttl) then redis.call('PEXPIRE', key, ttl) end
end
local function tomap(flat)
  local m = {}
  for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end
  return m
end
local function expires(m) return math.min(num(m.ls) + num(m.idle), num(m.abs)) end
local function live(m, now) return now < expires(m) end
local function split(route)
  local sp = string.find(route, ' ', 1, true)
  return string.sub(route, 1, sp - 1), string.sub(route, sp + 1)
end
-- The owner tag of a session id, or nil.
local function tag_of(id) return redis.call('GET', P .. 'i:' .. id) end
-- Ends a session: tombstone under its token hash, restorable data if asked,
-- removal from the user index. Returns the removed fields (HGETALL) or nil.
local function end_session(tag, id, reason, at, runtil, rest)
  local sk = okey(tag, 's:' .. id)
  local flat = redis.call('HGETALL', sk)
  if #flat == 0 then
    redis.call('ZREM', okey(tag, 'ix'), id)
    return nil
  end
  local m = tomap(flat)
  local xk = okey(tag, 'x:' .. m.h)
  redis.call('DEL', xk)
  if m.u then
    redis.call('HSET', xk, 'sid', id, 'r', reason, 'at', at, 'k', runtil, 'u', m.u)
  else
    redis.call('HSET', xk, 'sid', id, 'r', reason, 'at', at, 'k', runtil)
  end
  local ttl = ttl_for(num(runtil) - num(at))
  redis.call('PEXPIRE', xk, ttl)
  extend(P .. 't:' .. m.h, ttl)
  if rest ~= '' and m.u then
    local rk = okey(tag, 'r')
    local old = redis.call('HGET', rk, 'k')
    if (not old) or num(old) <= num(rest) then
      redis.call('DEL', rk)
      redis.call('HSET', rk, 'sid', id, 'd', m.d or '', 'k', rest)
      redis.call('PEXPIRE', rk, ttl_for(num(rest) - num(at)))
    end
  end
  redis.call('DEL', sk)
  redis.call('DEL', P .. 'i:' .. id)
  redis.call('ZREM', okey(tag, 'ix'), id)
  return flat
end
