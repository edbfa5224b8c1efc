-- KEYS: state hash, cell set. ARGV: worker id, max speed (m/s), fixes, in_area: fixes packs
-- lat, lng, ts and cell (the fix's fine cell code) of each fix as big-endian float64s; in_area
-- has one character per fix, "1" inside the area, "0" outside.
-- Fixes are applied in order; returns one code per fix: 1 accepted, 2 stale, 3 too fast.
-- Writes: the record (HSET), and the cell sets only when the worker changes fine cell or
-- becomes (un)searchable.
local hash, cells, wid = KEYS[1], KEYS[2], ARGV[1]
local max_speed = tonumber(ARGV[2])
local lat, lng, ts, available, in_area, cell, skills = decode(redis.call("HGET", hash, wid))
local was, was_cell = is_searchable(ts, available, in_area), cell
local codes = {}
local changed = false
local fixes, inside = ARGV[3], ARGV[4]
for i = 1, #inside do
  local flat, flng, fts, fcell = sunpack(">dddd", fixes, 32 * i - 31)
  local code = 1
  if ts >= 0 then
    if fts <= ts then
      code = 2
    elseif haversine_m(lat, lng, flat, flng) / (fts - ts) > max_speed then
      code = 3
    end
  end
  if code == 1 then
    lat, lng, ts, cell = flat, flng, fts, fcell
    in_area = byte(inside, i) - 48
    changed = true
  end
  codes[#codes + 1] = code
end
if changed then
  refile(cells, wid, was, was_cell, skills, is_searchable(ts, available, in_area), cell, skills)
  redis.call("HSET", hash, wid, encode(lat, lng, ts, available, in_area, cell, skills))
end
return codes
