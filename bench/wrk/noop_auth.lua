-- POST /bench/noop-auth: a no-op route behind the same JWT check and worker guard as the ping
-- routes. Same tokens, same rotation, same body bytes as ping.lua; only the handler differs.
local common = dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/common.lua")

setup = common.setup
done = common.done

local next_request

function init(args)
  common.init()
  next_request = common.single_ping("/bench/noop-auth", common.load_workers())
end

function request()
  return next_request()
end

function response(status, headers, body)
  common.count(status, body)
end
