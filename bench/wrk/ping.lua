-- POST /v1/workers/me/location: one ping per request, rotating over the workers; each ping is
-- a small random move around the worker's home, recorded_at omitted (so always the newest).
local common = dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/common.lua")

setup = common.setup
done = common.done

local next_request

function init(args)
  common.init()
  next_request = common.single_ping("/v1/workers/me/location", common.load_workers())
end

function request()
  return next_request()
end

function response(status, headers, body)
  common.count(status, body)
end
