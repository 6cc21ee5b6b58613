-- Shared by the annald HTTP benchmark scripts (bench/http-bench.sh).
-- Reads the tenant key from ANNAL_BENCH_KEY and prints one machine-readable
-- RESULT line at the end, so the driver can build its table.
local M = {}

M.key = os.getenv("ANNAL_BENCH_KEY") or ""
M.label = os.getenv("ANNAL_BENCH_LABEL") or "run"

-- A JSON string literal of exactly `n` bytes, quotes included.
function M.payload(n)
  return '"' .. string.rep("x", n - 2) .. '"'
end

function M.done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    "RESULT %s requests=%d rps=%.0f p50_us=%d p90_us=%d p99_us=%d max_us=%d errors=%d non2xx=%d\n",
    M.label, summary.requests, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    bad, summary.errors.status))
end

return M
