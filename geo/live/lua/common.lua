-- Shared by the live-index scripts (prepended to each when it is loaded).
--
-- KEYS[1]: the community's state hash, worker id -> record; KEYS[2]: the sorted set of its
-- searchable workers (available, in the area, with a position), scored by the code of their fine
-- grid cell (geo/live/cover.py). For each skill, KEYS[2] .. ":" .. skill holds those of them with
-- the skill, scored the same way (all keys share the community's hash tag).
--
-- A record is a msgpack array, so Python and tools can read it as before,
--   [lat, lng, ts, available, in_area, cell, skills, version]
-- always written with the same fixed-width encodings, so scripts read it with one struct.unpack:
--   0x98 | 0xcb lat | 0xcb lng | 0xcb ts | available | in_area | 0xcb cell | 0xdb len skills
--        | 0xd9 len version
-- (float64 big-endian; available, in_area: positive fixint 0/1; skills: str32 ",a,b,", the
-- worker's skills between commas, percent-encoded by Python so none holds a comma; version: str8,
-- the decimal digits of the worker's profile version the status was published from, which move.lua
-- checks against the caller's. Digits, not an integer: the skill search scans the record from the
-- skills on for ",skill,", and no byte of this field can be a comma.)
-- ts < 0 means no position yet; cell is then -1. A record of the 7-element layout (0x97, written
-- before the version existed) reads with version "".
local EARTH_RADIUS_M = 6371008.8
local RAD = math.pi / 180
local M_PER_DEG = RAD * EARTH_RADIUS_M
local FINE_LEVEL = 18 -- geo/live/cover.py FINE_LEVEL
local sin, cos, asin, sqrt, atan2 = math.sin, math.cos, math.asin, math.sqrt, math.atan2
local min, floor = math.min, math.floor
local spack, sunpack, byte, find = struct.pack, struct.unpack, string.byte, string.find

local function haversine_m(lat1, lng1, lat2, lng2)
  -- Same operations, in the same order, as geo.distance.haversine_m.
  local phi1, phi2 = lat1 * RAD, lat2 * RAD
  local dphi = phi2 - phi1
  local dlmb = (lng2 - lng1) * RAD
  local h = sin(dphi / 2) ^ 2 + cos(phi1) * cos(phi2) * sin(dlmb / 2) ^ 2
  return 2 * EARTH_RADIUS_M * asin(min(1.0, sqrt(h)))
end

local RECORD = ">BBdBdBdBBBd"
local POSITION = ">xxdxdxd" -- lat, lng, ts, then the offset after them
local FIELDS = ">xxdxdxdBBxd" -- lat, lng, ts, available, in_area, cell, then the offset of skills
local SKILLS_AT = 40 -- offset of the skills field (its str32 header)
local SKILL_TEXT_AT = 45 -- offset of its text
local NO_SKILLS = "\219\0\0\0\1,"

local function encode(lat, lng, ts, available, in_area, cell, skills, version)
  return spack(RECORD, 0x98, 0xcb, lat, 0xcb, lng, 0xcb, ts, available, in_area, 0xcb, cell)
    .. skills .. spack(">BB", 0xd9, #version) .. version
end

-- lat, lng, ts, available, in_area, cell, skills field, version; an empty state with version
-- false when there is no record (or one in a layout this version does not read).
local function decode(raw)
  local head = raw and byte(raw, 1)
  if (head == 0x98 or head == 0x97) and byte(raw, SKILLS_AT) == 0xdb then
    local lat, lng, ts, available, in_area, cell, at = sunpack(FIELDS, raw)
    if head == 0x97 then
      return lat, lng, ts, available, in_area, cell, string.sub(raw, at), ""
    end
    local version_at = SKILL_TEXT_AT + sunpack(">I4", raw, SKILLS_AT + 1)
    return lat, lng, ts, available, in_area, cell, string.sub(raw, at, version_at - 1),
      string.sub(raw, version_at + 2)
  end
  return 0, 0, -1, 0, 0, -1, NO_SKILLS, false
end

-- The code of the fine cell holding the point: geo/live/cover.py cell_code, the same IEEE
-- operations (row and column by floor), bits interleaved by arithmetic (exact: codes < 2^38).
local FINE_STEP = 180.0 / 2 ^ FINE_LEVEL
local FINE_ROWS = 2 ^ FINE_LEVEL
local function cell_code(lat, lng)
  local row = floor((lat + 90.0) / FINE_STEP)
  if row < 0 then row = 0 elseif row >= FINE_ROWS then row = FINE_ROWS - 1 end
  if not (lng >= -180.0 and lng < 180.0) then lng = (lng + 180.0) % 360.0 - 180.0 end
  local col = floor((lng + 180.0) / FINE_STEP) % (2 * FINE_ROWS)
  local code = 0
  if col >= FINE_ROWS then code, col = 1, col - FINE_ROWS end -- the hemisphere bit leads
  local p = FINE_ROWS / 2
  for _ = 1, FINE_LEVEL do
    local bits = 0
    if row >= p then row, bits = row - p, 2 end
    if col >= p then col, bits = col - p, bits + 1 end
    code = code * 4 + bits
    p = p / 2
  end
  return code
end

local function is_searchable(ts, available, in_area)
  return ts >= 0 and available == 1 and in_area == 1
end

-- The sorted sets a worker with this skills field is filed in while searchable.
local function cell_sets(cells, skills)
  local keys = { cells }
  for skill in string.gmatch(string.sub(skills, 6), "[^,]+") do
    keys[#keys + 1] = cells .. ":" .. skill
  end
  return keys
end

-- Keep the sorted sets in step with a worker's record: file it under its fine cell while
-- searchable, in the set of all and in its skills' sets. Writes only on a change of fine cell,
-- of searchability or of skills.
local function refile(cells, wid, was, was_cell, was_skills, now, now_cell, now_skills)
  if was and now and was_cell == now_cell then
    if was_skills == now_skills then return end
    local before, after = {}, {}
    for _, key in ipairs(cell_sets(cells, was_skills)) do before[key] = true end
    for _, key in ipairs(cell_sets(cells, now_skills)) do
      after[key] = true
      if not before[key] then redis.call("ZADD", key, now_cell, wid) end
    end
    for key in pairs(before) do
      if not after[key] then redis.call("ZREM", key, wid) end
    end
    return
  end
  if was and not now then
    for _, key in ipairs(cell_sets(cells, was_skills)) do redis.call("ZREM", key, wid) end
    return
  end
  if now then
    if was and was_skills ~= now_skills then
      local after = {}
      for _, key in ipairs(cell_sets(cells, now_skills)) do after[key] = true end
      for _, key in ipairs(cell_sets(cells, was_skills)) do
        if not after[key] then redis.call("ZREM", key, wid) end
      end
    end
    for _, key in ipairs(cell_sets(cells, now_skills)) do redis.call("ZADD", key, now_cell, wid) end
  end
end
