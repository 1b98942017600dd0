-- A static request (wrk's fast path: no request() function): method, path and headers come
-- from the command line. Only adds the JSON report.
local src = debug.getinfo(1, "S").source:sub(2)
dofile((src:match("(.*/)") or "./") .. "report.lua")
