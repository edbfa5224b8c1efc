-- POST /v1/workers/me/locations: BENCH_BATCH points per request (default 20), rotating over the
-- workers. Each worker walks STEP_M at most per axis per point, STEP_MS apart (at most ~21 m/s,
-- under the 200 km/h limit), and its timestamps only ever increase:
--   first point = max(last point sent + STEP_MS, BENCH_TS_FLOOR_MS, now - BENCH_LAG_S)
-- BENCH_TS_FLOOR_MS (from bench/ingest.py) is newer than anything sent in earlier runs, so every
-- point is newer than the worker's last accepted fix, and none is in the future.
-- The response's accepted / ignored / rejected counts are summed; done() also writes each
-- worker's last two points sent, for bench/ingest.py to compare with the index.
local common = dofile((os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/common.lua")

setup = common.setup
done = common.done

local STEP_MS = 10
local STEP_M = 0.15
local PATH = "/v1/workers/me/locations"

local workers, batch, lag_s, floor_ms, step_deg
local i = 0
local stamp_sec, stamp_prefix = -1, ""

local function stamp(ms)
  local sec = math.floor(ms / 1000)
  if sec ~= stamp_sec then
    stamp_sec, stamp_prefix = sec, os.date("!%Y-%m-%dT%H:%M:%S", sec)
  end
  return string.format("%s.%03dZ", stamp_prefix, ms - sec * 1000)
end

function init(args)
  common.init()
  workers = common.load_workers()
  batch = tonumber(os.getenv("BENCH_BATCH") or "20")
  lag_s = tonumber(os.getenv("BENCH_LAG_S") or "60")
  floor_ms = tonumber(os.getenv("BENCH_TS_FLOOR_MS") or "0")
  step_deg = STEP_M / common.M_PER_DEG
end

function request()
  i = i % #workers + 1
  local w = workers[i]
  local ts = math.max((w.ts or 0) + STEP_MS, floor_ms, (os.time() - lag_s) * 1000)
  local lat, lng = w.cur_lat or w.lat, w.cur_lng or w.lng
  local points, slat, slng = {}, "", ""
  for k = 1, batch do
    lat = lat + (2 * math.random() - 1) * step_deg
    lng = lng + (2 * math.random() - 1) * step_deg * w.lng_scale
    slat, slng = string.format("%.8f", lat), string.format("%.8f", lng)
    points[k] = '{"lat":' .. slat .. ',"lng":' .. slng .. ',"recorded_at":"' .. stamp(ts) .. '"}'
    w.ts = ts
    ts = ts + STEP_MS
  end
  w.cur_lat, w.cur_lng = lat, lng
  common.sent(w.line, slat .. " " .. slng .. " " .. string.format("%d", w.ts))
  return wrk.format("POST", PATH, w.headers, '{"points":[' .. table.concat(points, ",") .. "]}")
end

function response(status, headers, body)
  if common.count(status, body) then
    accepted = accepted + tonumber(string.match(body, '"accepted":(%d+)') or "0")
    ignored = ignored + tonumber(string.match(body, '"ignored":(%d+)') or "0")
    local _, n = string.gsub(string.match(body, '"rejected":%[(.-)%]') or "", '"index"', "")
    rejected = rejected + n
  end
end
