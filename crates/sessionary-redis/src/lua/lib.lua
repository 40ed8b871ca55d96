-- Shared by every script (prepended). ARGV[1] = key prefix, ARGV[2] = GC grace (ms).
-- Standalone: no KEYS; the scripts read and write the route keys (`t:`, `i:`,
-- `rf:`, `sf:`) themselves. Cluster (CL): KEYS[1] is a key in the owner's slot,
-- `P{tag}:<kind>[:<name>]`; the caller read the route (and wrote new routes)
-- before and maintains route TTLs after, so the script touches only the
-- owner's slot.
local P = ARGV[1]
local CL = #KEYS > 0
-- Cluster resharding: while the owner's slot is migrating (source) or
-- importing (target), its keys can be split between the two nodes, and a
-- script would read a key as missing that is on the other node, create one
-- there, or stop half-way on a key Redis calls non-local. Before anything
-- else, a two-key `EXISTS` on names that never exist in KEYS[1]'s slot (the
-- first `{...}` decides): Redis answers it only while the slot is stable
-- here (`TRYAGAIN` on a migrating or importing slot), and nothing can move
-- while the script runs. Then the script does nothing and replies
-- `TRYAGAIN`, which the store retries within its timeout.
if CL then
  local probe = redis.pcall('EXISTS', KEYS[1] .. ':#1', KEYS[1] .. ':#2')
  if type(probe) == 'table' and probe.err then
    return redis.error_reply('TRYAGAIN the owner slot is being resharded')
  end
end
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
-- Undecodable data ends the script with a `CORRUPT` error, which the store
-- reports as `StoreError::Corrupt` (not as a backend failure).
local function corrupt(what) error(redis.error_reply('CORRUPT ' .. what)) end
local function expires(m)
  local ls, idle, abs = num(m.ls), num(m.idle), num(m.abs)
  if not (ls and idle and abs) then corrupt('session without ls, idle or abs') end
  return math.min(ls + idle, abs)
end
local function live(m, now) return now < expires(m) end
-- A route `<tag> <name>`, possibly followed by `\n` and a snapshot (below).
local function split(route)
  local sp = string.find(route, ' ', 1, true)
  if not sp then corrupt('route without a tag') end
  local nl = string.find(route, '\n', sp + 1, true)
  return string.sub(route, 1, sp - 1), string.sub(route, sp + 1, (nl or 0) - 1)
end
-- Standalone: the token route `t:<hash>` also holds a snapshot of what
-- `load` answers for that hash, so a verification is one `GET`:
-- `<tag> <id>\n` + `s` (the session's HGETALL) or `x` (the tombstone's), the
-- fields as `<length>:<bytes>` one after the other. Every script that changes
-- a session or ends it rewrites the snapshot in the same script. The route's
-- TTL is kept (`KEEPTTL`). Cluster: nothing (the route is in another slot).
local function enc(flat)
  local parts = {}
  for i = 1, #flat do parts[i] = #flat[i] .. ':' .. flat[i] end
  return table.concat(parts)
end
local function snap(tag, id, h, kind, flat)
  if not CL then
    redis.call('SET', P .. 't:' .. h, tag .. ' ' .. id .. '\n' .. kind .. enc(flat), 'XX', 'KEEPTTL')
  end
end
-- The session's snapshot from its fields (HGETALL); returns them.
local function snap_session(tag, id, flat)
  if not CL and #flat > 0 then
    for i = 1, #flat, 2 do
      if flat[i] == 'h' then snap(tag, id, flat[i + 1], 's', flat) end
    end
  end
  return flat
end
-- Cluster: the tag and the name KEYS[1] names.
local function routed()
  local tag, rest = string.match(string.sub(KEYS[1], #P + 1), '^{([^}]*)}:(.*)$')
  return tag, string.match(rest, '^%a+:(.*)$')
end
-- A route (`<tag> <name>`), or nil: read here (standalone) or by the caller (Cluster).
local function route_get(key)
  if CL then
    local tag, name = routed()
    return tag .. ' ' .. name
  end
  return redis.call('GET', key)
end
-- Route writes and checks; in Cluster the caller does them outside the script.
local function route_set(key, value, ttl)
  if not CL then redis.call('SET', key, value, 'PX', ttl) end
end
local function route_exists(key)
  return (not CL) and redis.call('EXISTS', key) == 1
end
local function route_extend(key, ttl)
  if not CL then extend(key, ttl) end
end
local function route_del(key)
  if not CL then redis.call('DEL', key) end
end
-- The owner tag of a session id, or nil.
local function tag_of(id)
  if CL then return (routed()) end
  return redis.call('GET', P .. 'i:' .. id)
end
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
  route_extend(P .. 't:' .. m.h, ttl)
  if not CL then snap(tag, id, m.h, 'x', redis.call('HGETALL', xk)) end
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
  route_del(P .. 'i:' .. id)
  redis.call('ZREM', okey(tag, 'ix'), id)
  return flat
end
