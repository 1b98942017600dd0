-- Requests taken in turn from a file, one item per line:
--   wrk -t THREADS -s cycle.lua URL -- FILE [body|bearer] [THREADS]
-- body (default): POST with each line as the body (e.g. one login per user; content type from
-- the command line, -H); bearer: GET with each line as the bearer token. With THREADS, each wrk
-- thread takes only the lines i with i % THREADS == its id, so no two threads send the same
-- line at once (e.g. no concurrent logins of one user while lines >= connections).
local src = debug.getinfo(1, "S").source:sub(2)
dofile((src:match("(.*/)") or "./") .. "report.lua")

local items, n, bearer = {}, 0, false

function init(args)
  local count = tonumber(args[3] or "1")
  local i = 0
  for line in io.lines(args[1]) do
    if #line > 0 then
      if count == 1 or i % count == id then items[#items + 1] = line end
      i = i + 1
    end
  end
  assert(#items > 0, "nothing in " .. tostring(args[1]))
  bearer = args[2] == "bearer"
  n = math.random(#items)
end

function request()
  n = n % #items + 1
  if bearer then
    return wrk.format("GET", nil, { Authorization = "Bearer " .. items[n] })
  end
  return wrk.format("POST", nil, nil, items[n])
end
