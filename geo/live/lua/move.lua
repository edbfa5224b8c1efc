-- KEYS[1]: state hash. ARGV: prefix, worker id, max speed (m/s), then per fix:
--   lat, lng, ts, in_area (0/1), cell7, cell8, cell9
-- Fixes are applied in order; returns one code per fix: 1 accepted, 2 stale, 3 too fast.
local hash, prefix, wid = KEYS[1], ARGV[1], ARGV[2]
local max_speed = tonumber(ARGV[3])
local old = load_state(hash, wid) or empty_state()
local cur = copy(old)
local codes = {}
local changed = false
for i = 4, #ARGV, 7 do
  local lat, lng, ts = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local code = 1
  if cur[3] >= 0 then
    if ts <= cur[3] then
      code = 2
    elseif haversine_m(cur[1], cur[2], lat, lng) / (ts - cur[3]) > max_speed then
      code = 3
    end
  end
  if code == 1 then
    cur[1], cur[2], cur[3], cur[5] = lat, lng, ts, tonumber(ARGV[i + 3])
    cur[6], cur[7], cur[8] = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
    changed = true
  end
  codes[#codes + 1] = code
end
if changed then
  refile(prefix, wid, old, cur)
  redis.call("HSET", hash, wid, cmsgpack.pack(cur))
end
return codes
