-- GET /health: the HTTP ceiling of this daemon on this machine.
package.path = os.getenv("ANNAL_BENCH_DIR") .. "/?.lua;" .. package.path
local c = require("common")
wrk.method = "GET"
done = c.done
