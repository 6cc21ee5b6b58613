-- GET /v1/ledgers/big/records/{seq}/proof for uniformly random seqs below
-- ANNAL_BENCH_PROOF_SIZE (the checkpointed size of ledger "big").
package.path = os.getenv("ANNAL_BENCH_DIR") .. "/?.lua;" .. package.path
local c = require("common")
local size = tonumber(os.getenv("ANNAL_BENCH_PROOF_SIZE"))
local headers = { ["Authorization"] = "Bearer " .. c.key }

function init(args)
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0))
end

function request()
  local seq = math.random(0, size - 1)
  return wrk.format("GET", "/v1/ledgers/big/records/" .. seq .. "/proof", headers)
end

done = c.done
