-- KEYS: state hash, cell set, cell entries. ARGV: worker id, max speed (m/s), fixes, in_area,
-- version: fixes packs lat, lng, ts and the code of the fine cell (geo/live/cells.py cell_code)
-- of each fix as big-endian float64s; in_area has one character per fix, "1" inside the area,
-- "0" outside; version is the profile version the caller's view of the worker comes from, or ""
-- to apply the fixes whatever the record holds.
-- Returns {0, version} and writes nothing when a version is given and the worker's record holds
-- another one (version "", or false when there is no record): the caller's view is out of date.
-- Otherwise fixes are applied in order; returns one code per fix: 1 accepted, 2 stale, 3 too fast,
-- then -1 when the worker entered a fine cell whose parent has no entry in KEYS[3] yet (the
-- caller writes the entries above that cell, cells.py `chain`).
-- Writes: the record (HSET), and the cell sets only when the worker changes fine cell or
-- becomes (un)searchable.
local hash, cells, wid = KEYS[1], KEYS[2], ARGV[1]
local lat, lng, ts, available, in_area, cell, skills, version =
  decode(redis.call("HGET", hash, wid))
local expect = ARGV[5]
if expect and expect ~= "" and version ~= expect then return { 0, version } end
local max_speed = tonumber(ARGV[2])
local SPEED_SLACK_M, SPEED_MIN_DT_S = 25.0, 1.0 -- geo/live/base.py
local was, was_cell = is_searchable(ts, available, in_area), cell
local codes = {}
local last, last_cell = 0, cell
local fixes, inside = ARGV[3], ARGV[4]
for i = 1, #inside do
  local flat, flng, fts, fcell = sunpack(">dddd", fixes, 32 * i - 31)
  local code = 1
  if ts >= 0 then
    if fts <= ts then
      code = 2
    elseif (haversine_m(lat, lng, flat, flng) - SPEED_SLACK_M) / math.max(fts - ts, SPEED_MIN_DT_S)
        > max_speed then
      code = 3
    end
  end
  if code == 1 then
    lat, lng, ts, last, last_cell = flat, flng, fts, i, fcell
  end
  codes[i] = code
end
if last > 0 then
  cell = last_cell
  in_area = byte(inside, last) - 48
  refile(cells, wid, was, was_cell, skills, is_searchable(ts, available, in_area), cell, skills)
  local record = encode(lat, lng, ts, available, in_area, cell, skills, version or "")
  redis.call("HSET", hash, wid, record)
  if cell ~= was_cell and redis.call("HEXISTS", KEYS[3], parent_field(cell)) == 0 then
    codes[#codes + 1] = -1
  end
end
return codes
