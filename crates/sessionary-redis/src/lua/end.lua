-- ARGV: 3 id, 4-7 ending (reason, at, until, restore until or ''). Removed fields or {}.
local tag = tag_of(ARGV[3])
if not tag then return {} end
return end_session(tag, ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]) or {}
