-- wrk script: POST pre-built PCS bodies, each thread a distinct slice, never reused unless the
-- slice runs out (counted as `wraps`, so a "first-seen" run can prove nothing was resent).
-- usage: wrk -t T -c C -d D -s bench/rotate.lua URL -- BODIES_FILE PATH T
-- BODIES_FILE: one request a line, "<tenant_id>\t<json body>". The thread count T is passed
-- again as an argument: wrk may run a thread's init() before setup() has seen every thread,
-- so a count gathered in setup() is not reliable (thread 0 then took every body and the
-- threads resent each other's, which made "first-seen" runs about a quarter duplicates).

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  thread:set("nthreads", 0)  -- fixed up below once every thread is known
  counter = counter + 1
  table.insert(threads, thread)
  for _, t in ipairs(threads) do t:set("nthreads", counter) end
end

function init(args)
  local file, path = args[1], args[2] or "/v1/pcs/submit"
  nthreads = tonumber(args[3]) or nthreads
  reqs = {}
  statuses = {}
  wraps = 0
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == id then
      local tab = line:find("\t", 1, true)
      local tenant, body = line:sub(1, tab - 1), line:sub(tab + 1)
      local headers = {["Content-Type"] = "application/json", ["X-Tenant-Id"] = tenant}
      reqs[#reqs + 1] = wrk.format("POST", path, headers, body)
    end
    i = i + 1
  end
  n = 0
end

function request()
  n = n + 1
  if n > #reqs then
    n = 1
    wraps = wraps + 1
  end
  return reqs[n]
end

function response(status, headers, body)
  -- (replays are counted server-side, flk_dedup_hits_total: wrk's per-response header
  -- table is not reliable across keep-alive responses)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local mix, total_wraps = {}, 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do mix[k] = (mix[k] or 0) + v end
    total_wraps = total_wraps + t:get("wraps")
  end
  local parts = {}
  for k, v in pairs(mix) do parts[#parts + 1] = string.format('"%s":%d', k, v) end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,"wraps":%d,"status":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    latency.mean, total_wraps, table.concat(parts, ",")))
end
