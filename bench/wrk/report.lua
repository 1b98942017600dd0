-- Shared by the wrk scripts (loaded with dofile): numbers the threads (the global `id` of each
-- thread's script, 0, 1, ...) and prints one JSON line with the run's figures when wrk finishes
-- (latencies as wrk measures them: closed loop).

local started = 0
function setup(thread)
  thread:set("id", started)
  started = started + 1
end

function done(summary, latency, requests)
  local e = summary.errors
  local failed = e.status + e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"failed":%d,"non_2xx":%d,"socket_errors":%d,' ..
    '"rps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, failed, e.status,
    e.connect + e.read + e.write + e.timeout,
    (summary.requests - failed) / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
