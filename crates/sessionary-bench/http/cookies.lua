-- wrk script: every request carries `Cookie: session=<token>`, rotating over the
-- tokens the server wrote (one per line; the file is the script's first argument).
-- The requests are built once in `init`, so the per-request Lua cost is one table
-- lookup. The same script is used against the bare port (which ignores the
-- cookie), so both sides send identical bytes.
local reqs = {}
local n = 0
local i = 0

function init(args)
  local path = wrk.path
  for line in io.lines(args[1]) do
    n = n + 1
    reqs[n] = wrk.format("GET", path, {
      ["Cookie"] = "session=" .. line,
      ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    })
  end
  if n == 0 then
    error("no tokens in " .. args[1])
  end
  -- Threads start at different offsets of the list.
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  i = math.random(n) - 1
end

function request()
  i = i % n + 1
  return reqs[i]
end
