-- Shared by the live-index scripts (prepended to each when it is loaded).
--
-- KEYS[1]: the community's state hash, worker id -> record; KEYS[2]: the sorted set of its
-- searchable workers (available, in the area, with a position), scored by the code of their fine
-- H3 cell (geo/live/cells.py). For each skill, KEYS[2] .. ":" .. skill holds those of them with
-- the skill, scored the same way; KEYS[3] is the hash of cell entries the search splits cells
-- with (all keys share the community's hash tag).
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
local FINE_RES = 10 -- geo/live/cells.py FINE_RES
local sin, cos, asin, sqrt = math.sin, math.cos, math.asin, math.sqrt
local min = math.min
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

-- The field of the entry (geo/live/cells.py `entry`) of a fine cell's parent, in the community's
-- cell-entries hash: resolution FINE_RES - 1, the first fine code under it (cells.py `field`).
local function parent_field(code)
  return spack(">Bd", FINE_RES - 1, code - code % 8)
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

local function older_than_stamp(stamps, wid, as_of)
  -- status.lua, remove.lua: true (write nothing) when the worker's stamp is later than as_of
  -- (the writer read older truth); else the stamp becomes as_of. No as_of: no check.
  if not as_of then return false end
  local seen = tonumber(redis.call("HGET", stamps, wid))
  if seen and seen > tonumber(as_of) then return true end
  redis.call("HSET", stamps, wid, as_of)
  return false
end

local SPEED_SLACK_M, SPEED_MIN_DT_S = 25.0, 1.0 -- geo/live/base.py

-- Apply n fixes to worker wid, in order: the body of move.lua, and of each item of
-- move_many.lua (one fix per item), so a batch judges every fix exactly as a single move does.
-- fixes packs lat, lng, ts and fine cell code per fix as big-endian float64s, the first at byte
-- `at`; inside has one character per fix ("1" in the area, "0" not), the first at `in_at`.
-- expect: the profile version the caller's view comes from, or nil / "" to apply the fixes
-- whatever the record holds.
-- Returns nil, version and writes nothing when expect is given and the record holds another
-- version. Otherwise returns the codes (1 accepted, 2 stale, 3 too fast, one per fix) and true
-- when the worker entered a fine cell whose parent has no entry in `entries` yet (the caller
-- then writes the entries above that cell, cells.py `chain`). Writes the record (HSET), and the
-- cell sets only when the worker changes fine cell or becomes (un)searchable.
local function move_worker(hash, cells, entries, wid, max_speed, fixes, at, inside, in_at, n,
                           expect)
  local lat, lng, ts, available, in_area, cell, skills, version =
    decode(redis.call("HGET", hash, wid))
  if expect and expect ~= "" and version ~= expect then return nil, version end
  local was, was_cell = is_searchable(ts, available, in_area), cell
  local codes = {}
  local last, last_cell = 0, cell
  for i = 1, n do
    local flat, flng, fts, fcell = sunpack(">dddd", fixes, at + 32 * (i - 1))
    local code = 1
    if ts >= 0 then
      if fts <= ts then
        code = 2
      else
        local moved = haversine_m(lat, lng, flat, flng) - SPEED_SLACK_M
        if moved / math.max(fts - ts, SPEED_MIN_DT_S) > max_speed then code = 3 end
      end
    end
    if code == 1 then
      lat, lng, ts, last, last_cell = flat, flng, fts, i, fcell
    end
    codes[i] = code
  end
  local fresh_cell = false
  if last > 0 then
    cell = last_cell
    in_area = byte(inside, in_at + last - 1) - 48
    refile(cells, wid, was, was_cell, skills, is_searchable(ts, available, in_area), cell, skills)
    redis.call("HSET", hash, wid, encode(lat, lng, ts, available, in_area, cell, skills,
                                         version or ""))
    fresh_cell = cell ~= was_cell and redis.call("HEXISTS", entries, parent_field(cell)) == 0
  end
  return codes, fresh_cell
end

-- Set worker wid's availability, skills field and version, keeping the position: the body of
-- status.lua, and of each item of status_many.lua. as_of: nil, or the writer's stamp
-- (`older_than_stamp`: refused when the worker's stamp is later). Returns 0 refused, 1 written.
local function set_worker_status(hash, cells, stamps, wid, available, skills, version, as_of)
  if older_than_stamp(stamps, wid, as_of) then return 0 end
  local lat, lng, ts, was_available, in_area, cell, was_skills =
    decode(redis.call("HGET", hash, wid))
  local was = is_searchable(ts, was_available, in_area)
  available = tonumber(available)
  refile(cells, wid, was, cell, was_skills, is_searchable(ts, available, in_area), cell, skills)
  redis.call("HSET", hash, wid, encode(lat, lng, ts, available, in_area, cell, skills,
                                       version or ""))
  return 1
end
