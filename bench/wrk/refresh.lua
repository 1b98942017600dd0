-- Refresh-token chains: every response carries the next refresh token of its chain, which
-- replaces the one just used (single-use, rotating refresh tokens).
--   wrk -t THREADS -s refresh.lua URL -- TOKENS_FILE TEMPLATE THREADS
-- TOKENS_FILE has one refresh token per line (at least one per connection); TEMPLATE is the
-- body with {token} where the token goes (form bodies get it percent-encoded when TEMPLATE
-- does not start with '{'). Each wrk thread owns the lines i with i % THREADS == its id.
local src = debug.getinfo(1, "S").source:sub(2)
dofile((src:match("(.*/)") or "./") .. "report.lua")

local pool, template, form = {}, nil, false

local function encode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

function init(args)
  template = args[2]
  form = template:sub(1, 1) ~= "{"
  local count = tonumber(args[3] or "1")
  local i = 0
  for line in io.lines(args[1]) do
    if #line > 0 then
      if i % count == id then pool[#pool + 1] = line end
      i = i + 1
    end
  end
end

-- wrk calls request() once on thread 0 before connecting, to check the script (the request is
-- never sent): that call must not consume a token.
local checked = false

function request()
  local token
  if id == 0 and not checked then
    checked = true
    token = pool[1] or "exhausted"
  else
    token = table.remove(pool, 1) or "exhausted"
  end
  if form then token = encode(token) end
  local body = template:gsub("{token}", function() return token end)
  return wrk.format("POST", nil, nil, body)
end

local shown = 0
function response(status, headers, body)
  local next_token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if next_token then
    pool[#pool + 1] = next_token
  elseif shown < 3 then -- the first failures of each thread, for the log
    shown = shown + 1
    io.stderr:write(string.format("refresh.lua: %d %s\n", status, body:sub(1, 300)))
  end
end
