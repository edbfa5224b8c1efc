-- GET /bench/noop: a public no-op route (no token, no body) on the same app and middleware.
local common = dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/common.lua")

setup = common.setup
done = common.done

local req

function init(args)
  common.init()
  req = wrk.format("GET", "/bench/noop")
end

function request()
  return req
end

function response(status, headers, body)
  common.count(status, body)
end
