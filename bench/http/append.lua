-- POST /v1/ledgers/{ledger}/records with a 256-byte JSON payload.
-- ANNAL_BENCH_LEDGERS=1 sends everything to one ledger (ANNAL_BENCH_LEDGER,
-- default "hot"); N > 1 rotates
-- requests over ledgers "l0".."l{N-1}", each thread starting at its own
-- offset so the connections spread evenly.
package.path = os.getenv("ANNAL_BENCH_DIR") .. "/?.lua;" .. package.path
local c = require("common")
local ledgers = tonumber(os.getenv("ANNAL_BENCH_LEDGERS") or "1")
local single = os.getenv("ANNAL_BENCH_LEDGER") or "hot"
local payload_bytes = tonumber(os.getenv("ANNAL_BENCH_PAYLOAD_BYTES") or "256")
local body = '{"payload":' .. c.payload(payload_bytes) .. '}'
local headers = {
  ["Authorization"] = "Bearer " .. c.key,
  ["Content-Type"] = "application/json",
}

local threads = 0
function setup(thread)
  thread:set("offset", threads * 7)
  threads = threads + 1
end

local reqs = {}
local i = 0
function init(args)
  if ledgers == 1 then
    reqs[1] = wrk.format("POST", "/v1/ledgers/" .. single .. "/records", headers, body)
  else
    for n = 0, ledgers - 1 do
      reqs[n + 1] = wrk.format("POST", "/v1/ledgers/l" .. n .. "/records", headers, body)
    end
  end
  i = offset or 0
end

function request()
  i = i + 1
  return reqs[(i % #reqs) + 1]
end

done = c.done
