-- Shared by the live-index scripts (prepended to each when it is loaded).
-- State of a worker in a community, msgpack array in the community's state hash:
--   {lat, lng, ts, available, in_area, cell7, cell8, cell9, skills}
-- ts < 0 means no position yet. Cells are hex strings; set keys are prefix .. cell [.. ":" .. skill].
local EARTH_RADIUS_M = 6371008.8
local RAD = math.pi / 180

local function haversine_m(lat1, lng1, lat2, lng2)
  -- Same operations, in the same order, as geo.distance.haversine_m.
  local phi1, phi2 = lat1 * RAD, lat2 * RAD
  local dphi = phi2 - phi1
  local dlmb = (lng2 - lng1) * RAD
  local h = math.sin(dphi / 2) ^ 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ^ 2
  return 2 * EARTH_RADIUS_M * math.asin(math.min(1.0, math.sqrt(h)))
end

local function empty_state()
  return {0, 0, -1, 0, 0, "", "", "", {}}
end

local function searchable(s)
  return s[3] >= 0 and s[4] == 1 and s[5] == 1
end

-- The set keys a state is filed under (none unless searchable).
local function member_keys(prefix, s)
  local keys = {}
  if not searchable(s) then return keys end
  for level = 6, 8 do
    local cell = s[level]
    keys[#keys + 1] = prefix .. cell
    for _, skill in ipairs(s[9]) do
      keys[#keys + 1] = prefix .. cell .. ":" .. skill
    end
  end
  return keys
end

-- Move a worker's set memberships from state `old` to state `new`.
local function refile(prefix, wid, old, new)
  local before, after = {}, {}
  for _, k in ipairs(member_keys(prefix, old)) do before[k] = true end
  for _, k in ipairs(member_keys(prefix, new)) do after[k] = true end
  for k in pairs(before) do
    if not after[k] then redis.call("SREM", k, wid) end
  end
  for k in pairs(after) do
    if not before[k] then redis.call("SADD", k, wid) end
  end
end

local function load_state(hash, wid)
  local raw = redis.call("HGET", hash, wid)
  if raw then return cmsgpack.unpack(raw) end
  return nil
end

local function copy(s)
  local skills = {}
  for i, v in ipairs(s[9]) do skills[i] = v end
  return {s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], skills}
end
