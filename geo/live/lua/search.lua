-- The search, as a Redis function library (FUNCTION LOAD once, FCALL per search): the helpers and
-- constant tables below are created when the library loads, not on every call. RedisLiveIndex
-- puts the "#!lua name=..." line and `local FUNCTION_NAME = "..."` before this text. Unlike the
-- other scripts, this one does not get common.lua prepended (a library cannot reach `struct` while
-- it loads), so it repeats the few constants it shares with it.
--
-- FCALL <name> 2 <state hash> <cell set> lat lng radius_m limit min_ts n_skills skill...
-- (anything after is ignored). Returns {positions, id, id, ...}, nearest first (ties by id);
-- positions packs the distance, lat, lng and ts of each result as big-endian float64s.
--
-- Best-first walk of the grid (geo/live/cover.py) in the sorted set of the workers with a
-- requested skill (or of all): start from the few cells meeting the disc at a level about its
-- size; always take the cell with the smallest lower bound on its distance from the point (exact,
-- from the point itself); split it into its four children if it holds more than LEAF workers,
-- else fetch its ids; read the fetched workers' records in batches, keeping the nearest `limit`;
-- stop when the next bound exceeds the radius or the limit-th distance found.
local EARTH_RADIUS_M = 6371008.8 -- common.lua
local PI = 3.141592653589793 -- math.pi
local RAD = PI / 180
local M_PER_DEG = RAD * EARTH_RADIUS_M
local TWO_R = 2 * EARTH_RADIUS_M
local FINE_LEVEL = 18 -- geo/live/cover.py FINE_LEVEL
local POSITION = ">xxdxdxd" -- lat, lng, ts of a record (common.lua)
local SKILL_TEXT_AT = 45 -- offset of a record's skills text (common.lua)
-- Library functions: no global is reachable while a library loads, so these are bound by the
-- first call.
local sin, cos, asin, sqrt, atan2, min, max, floor
local find, format, rep, concat, insert, unpack_, tonumber_, call, sunpack, spack

local function bind()
  sin, cos, asin, sqrt, atan2 = math.sin, math.cos, math.asin, math.sqrt, math.atan2
  min, max, floor = math.min, math.max, math.floor
  find, format, rep, concat = string.find, string.format, string.rep, table.concat
  insert, unpack_, tonumber_ = table.insert, unpack, tonumber
  call, sunpack, spack = redis.call, struct.unpack, struct.pack
end

-- A cell is fetched whole when it holds at most LEAF workers, else split into its four children.
-- Whether it does is known from ZCOUNT, or guessed from its parent's count (a quarter of it):
-- a cell guessed to hold more than DENSE is split without counting, one guessed to hold at most
-- SPARSE is fetched right away (LIMIT LEAF + 1: too many back means split, and count, after all).
local LEAF, DENSE, SPARSE = 24, 96, 12
local LEAF_LIMIT = "25" -- LEAF + 1
local BATCH = 32 -- records to read at once (fewer HMGET calls)
-- Per level: cell side (degrees, 180 / 2^level), fine codes per cell (4^(FINE_LEVEL - level));
-- 2^k.
local STEP, SPAN, POW2 = {}, {}, {}
for level = 0, FINE_LEVEL do
  STEP[level] = 180.0 / 2 ^ level
  SPAN[level] = 4 ^ (FINE_LEVEL - level)
end
for k = 0, FINE_LEVEL + 1 do POW2[k] = 2 ^ k end

-- The query, set by each call.
local hash, zset, qlat, qlng, radius, limit, min_ts
local needle, needles, n_needles
local phiq, sin_phiq, cos_phiq

-- Distance from the query point, as haversine_m(qlat, qlng, lat, lng) computes it (the same
-- operations in the same order; cos(phi1) computed once).
local function distance(lat, lng)
  local phi2 = lat * RAD
  local dphi = phi2 - phiq
  local dlmb = (lng - qlng) * RAD
  local h = sin(dphi / 2) ^ 2 + cos_phiq * cos(phi2) * sin(dlmb / 2) ^ 2
  local s = sqrt(h)
  if s > 1.0 then s = 1.0 end
  return TWO_R * asin(s)
end

-- A lower bound on the distance from the query point to any point of the cell (level, row,
-- col): the exact least distance to the cell's lat/lng rectangle, less a margin for rounding.
-- The nearest point of a lat/lng rectangle is on its meridian edge nearest in longitude (or due
-- north/south when the point's longitude is inside), where the distance along the meridian has
-- a single minimum, at its foot or an end.
local function cell_bound(level, row, col)
  local step = STEP[level]
  local south = -90 + row * step
  local north = south + step
  local west = -180 + col * step
  local b
  local off = (qlng - west) % 360 -- degrees the point lies east of the west edge
  if off <= step then
    if qlat < south then
      b = (south - qlat) * M_PER_DEG
    elseif qlat > north then
      b = (qlat - north) * M_PER_DEG
    else
      return 0
    end
  else
    local edge, dlng
    if off - step <= 360 - off then
      edge, dlng = west + step, off - step
    else
      edge, dlng = west, 360 - off
    end
    -- Latitude of the meridian's point nearest the query point (its foot); the distance grows
    -- with the angle from it, so the nearest point of the edge is the foot or the end nearer it.
    local foot = atan2(sin_phiq, cos_phiq * cos(dlng * RAD)) / RAD
    if foot <= south or foot >= north then
      local to_south, to_north = (south - foot) % 360, (foot - north) % 360
      foot = to_south <= to_north and south or north
    end
    b = distance(foot, edge)
  end
  -- Computed distances are good to ~1e-9 m plus ~1e-15 relative (the haversine loses accuracy
  -- only towards antipodal points, beyond 1e7 m).
  if b > 1e7 then return b - 1 end
  return b * (1 - 1e-9) - 1e-6
end

-- The heap of cells to visit, by bound: {bound, level, row, col, code, guessed count or -1}.
local heap, hn = {}, 0

local function push(cell)
  local b = cell[1]
  hn = hn + 1
  local k = hn
  while k > 1 do
    local p = (k - k % 2) / 2
    local up = heap[p]
    if up[1] <= b then break end
    heap[k] = up
    k = p
  end
  heap[k] = cell
end

local function pop()
  local top, last = heap[1], heap[hn]
  heap[hn] = nil
  hn = hn - 1
  if hn > 0 then
    local b, k = last[1], 1
    while true do
      local c = 2 * k
      if c > hn then break end
      local child = heap[c]
      if c < hn and heap[c + 1][1] < child[1] then
        c = c + 1
        child = heap[c]
      end
      if b <= child[1] then break end
      heap[k] = child
      k = c
    end
    heap[k] = last
  end
  return top
end

-- SPREAD[x]: the 8 bits of x with a zero bit inserted above each (arithmetic only: the library
-- loads without `bit` or `math`).
local SPREAD = {}
for x = 0, 255 do
  local out, rest, place = 0, x, 1
  while rest > 0 do
    out = out + rest % 2 * place
    rest, place = (rest - rest % 2) / 2, place * 4
  end
  SPREAD[x] = out
end

local function spread(x) -- x < 2^24
  local low, mid = x % 256, (x - x % 256) / 256
  local high = (mid - mid % 256) / 256
  return SPREAD[low] + SPREAD[mid % 256] * 65536 + SPREAD[high] * 4294967296
end

-- code(level, row, col): the hemisphere (leading column) bit, then row and column bits
-- interleaved, most significant first (geo/live/cover.py).
local function code_of(level, row, col)
  local code = 0
  if col >= POW2[level] then -- the hemisphere bit
    code, col = SPAN[FINE_LEVEL - level], col - POW2[level] -- 4^level
  end
  return code + 2 * spread(row) + spread(col)
end

-- Start cells: those meeting the disc's bounding box, at the finest level where the box spans at
-- most two cells each way (the disc touching a pole spans every longitude).
local function start()
  local a = radius / EARTH_RADIUS_M
  local half_lat = a / RAD
  local half_lng = 180
  if a < 1.5 and phiq + a < PI / 2 and phiq - a > -PI / 2 and sin(a) < cos_phiq then
    half_lng = asin(sin(a) / cos_phiq) / RAD
  end
  half_lat = half_lat * (1 + 1e-6) + 1e-9
  half_lng = half_lng * (1 + 1e-6) + 1e-9
  local level = FINE_LEVEL
  local widest = 2 * max(half_lat, half_lng)
  while level > 0 and STEP[level] < widest do level = level - 1 end
  local step = STEP[level]
  local rows, cols = POW2[level], POW2[level + 1]
  local r0 = max(0, floor((qlat - half_lat + 90) / step))
  local r1 = min(rows - 1, floor((qlat + half_lat + 90) / step))
  local c0, c1
  if half_lng >= 180 then
    c0, c1 = 0, cols - 1
  else
    local lng = (qlng + 180) % 360 - 180
    c0 = floor((lng - half_lng + 180) / step)
    c1 = floor((lng + half_lng + 180) / step)
    if c1 - c0 >= cols then c0, c1 = 0, cols - 1 end
  end
  for row = r0, r1 do
    for c = c0, c1 do
      local col = c % cols
      local b = cell_bound(level, row, col)
      if b <= radius then push({ b, level, row, col, code_of(level, row, col), -1 }) end
    end
  end
end

-- The nearest `limit` so far, sorted by (distance, id): {distance, id, lat, lng, ts}.
local best, n = {}, 0

local function offer(d, id, lat, lng, ts)
  if n >= limit then
    local last = best[n]
    local ld = last[1]
    if d > ld or (d == ld and tonumber_(id) > tonumber_(last[2])) then return end
    best[n] = nil
    n = n - 1
  end
  -- Binary search for the first entry that sorts after (d, id); insert before it.
  local lo, hi = 1, n + 1
  while lo < hi do
    local mid = lo + hi
    mid = (mid - mid % 2) / 2
    local e = best[mid]
    local ed = e[1]
    if ed < d or (ed == d and tonumber_(e[2]) < tonumber_(id)) then
      lo = mid + 1
    else
      hi = mid
    end
  end
  insert(best, lo, { d, id, lat, lng, ts })
  n = n + 1
end

-- Ids fetched, records not read yet (the table is reused: entries past np are stale).
local pending, np = {}, 0

-- Read the pending workers' records: the fresh ones with the skills within the cut-off distance
-- (the radius, or the limit-th distance so far) are offered.
local function flush()
  for j = 1, np, 1000 do
    local last = j + 999
    if last > np then last = np end
    local recs = call("HMGET", hash, unpack_(pending, j, last))
    for k = 1, #recs do
      local raw = recs[k]
      if raw and (not needle or find(raw, needle, SKILL_TEXT_AT, true)) then
        local lat, lng, ts = sunpack(POSITION, raw)
        local ok = ts >= min_ts
        for s = 2, n_needles do
          if ok and not find(raw, needles[s], SKILL_TEXT_AT, true) then ok = false end
        end
        if ok then
          local cut = radius
          if n >= limit then
            local kth = best[n][1]
            if kth < cut then cut = kth end
          end
          -- No nearer than the latitude difference along a meridian: skip the haversine when
          -- that alone puts the worker beyond the cut-off.
          local dlat = lat - qlat
          if dlat < 0 then dlat = -dlat end
          if dlat * M_PER_DEG <= (cut > 1e7 and cut + 1 or cut * (1 + 1e-9) + 1e-6) then
            -- haversine_m(qlat, qlng, lat, lng): the same operations in the same order.
            local phi = lat * RAD
            local dphi = phi - phiq
            local h = sin(dphi / 2) ^ 2 + cos_phiq * cos(phi) * sin((lng - qlng) * RAD / 2) ^ 2
            local root = sqrt(h)
            if root > 1.0 then root = 1.0 end
            local d = TWO_R * asin(root)
            if d <= cut then offer(d, pending[j + k - 1], lat, lng, ts) end
          end
        end
      end
    end
  end
  np = 0
end

local function cutoff()
  if n >= limit and best[n][1] < radius then return best[n][1] end
  return radius
end

-- Of a split's children: keep the nearest in hand (returned, to be visited next unless something
-- in the heap is nearer), push the others.
local near
local function take(child)
  if not near then
    near = child
  elseif child[1] < near[1] then
    push(near)
    near = child
  else
    push(child)
  end
end

local function nearest_child()
  local child = near
  near = nil
  if child and hn > 0 and heap[1][1] < child[1] then
    push(child)
    return nil
  end
  return child
end

local function add(ids)
  for k = 1, #ids do pending[np + k] = ids[k] end
  np = np + #ids
end

-- Split a cell: its children within the cut-off, each guessed to hold `guess`.
local function split(cell, cut, guess)
  local level, row, col, code = cell[2] + 1, 2 * cell[3], 2 * cell[4], 4 * cell[5]
  for dr = 0, 1 do
    for dc = 0, 1 do
      local b = cell_bound(level, row + dr, col + dc)
      if b <= cut then take({ b, level, row + dr, col + dc, code + dr * 2 + dc, guess }) end
    end
  end
  return nearest_child()
end

-- Visit a cell: read it (its ids join the pending ones) or split it. Returns the child to visit
-- next, if any.
local function visit(cell, cut)
  local level, guess = cell[2], cell[6]
  local first = cell[5] * SPAN[level] -- the cell's fine codes: [first, first + SPAN[level])
  local lo, hi = format("%d", first), format("%d", first + SPAN[level] - 1)
  if level == FINE_LEVEL then
    add(call("ZRANGEBYSCORE", zset, lo, hi))
  elseif guess > DENSE then
    return split(cell, cut, guess / 4)
  elseif guess >= 0 and guess <= SPARSE then
    local ids = call("ZRANGEBYSCORE", zset, lo, hi, "LIMIT", "0", LEAF_LIMIT)
    if #ids > LEAF then return split(cell, cut, -1) end
    add(ids)
  else
    local count = call("ZCOUNT", zset, lo, hi)
    if count > LEAF then
      return split(cell, cut, count / 4)
    elseif count > 0 then
      add(call("ZRANGEBYSCORE", zset, lo, hi))
    end
  end
  return nil
end

local function search(keys, args)
  if not call then bind() end
  hash = keys[1]
  local cells = keys[2] or (string.sub(hash, 1, -3) .. "/cells") -- named as RedisLiveIndex does
  qlat, qlng = tonumber_(args[1]), tonumber_(args[2])
  radius, limit, min_ts = tonumber_(args[3]), tonumber_(args[4]), tonumber_(args[5])
  local n_skills = tonumber_(args[6])
  -- The set to walk: that of a requested skill (the one with the fewest workers when there are
  -- several), or that of all; any other requested skill is checked on each record.
  local pick = 0
  zset = cells
  if n_skills == 1 then
    if args[7] ~= "" then pick = 1 end
  elseif n_skills > 1 then
    local fewest
    for k = 1, n_skills do
      if args[6 + k] ~= "" then
        local size = call("ZCARD", cells .. ":" .. args[6 + k])
        if not fewest or size < fewest then pick, fewest = k, size end
      end
    end
  end
  needles = {}
  for k = 1, n_skills do
    if k == pick then
      zset = cells .. ":" .. args[6 + k]
    else
      needles[#needles + 1] = "," .. args[6 + k] .. ","
    end
  end
  needle, n_needles = needles[1], #needles
  phiq = qlat * RAD
  sin_phiq, cos_phiq = sin(phiq), cos(phiq)
  heap, hn, best, n, np, near = {}, 0, {}, 0, 0, nil

  if limit > 0 and radius >= 0 then
    start()
    local cell
    while true do
      local cut = cutoff()
      if not cell then
        -- Nothing nearer to visit within the cut-off: read what is pending first, which may
        -- lower the cut-off.
        if hn == 0 or heap[1][1] > cut or np >= BATCH then
          flush()
          cut = cutoff()
        end
        if hn == 0 or heap[1][1] > cut then break end
        cell = pop()
      end
      cell = visit(cell, cut)
    end
    flush()
  end

  local out, values = { "" }, {}
  for k = 1, n do
    local b = best[k]
    values[4 * k - 3], values[4 * k - 2], values[4 * k - 1], values[4 * k] = b[1], b[3], b[4], b[5]
    out[k + 1] = b[2]
  end
  local parts = {}
  for k = 1, 4 * n, 800 do
    local last = min(k + 799, 4 * n)
    parts[#parts + 1] = spack(">" .. rep("d", last - k + 1), unpack_(values, k, last))
  end
  out[1] = concat(parts)
  best, heap = {}, {} -- let the collector have this search's tables
  -- Redis runs a large collection step every 50 calls, which made those calls slow (the p99);
  -- a small step after every search keeps each cheap and, measured, lowers the mean too.
  collectgarbage("step", 0)
  return out
end

redis.register_function({
  function_name = FUNCTION_NAME,
  callback = search,
  flags = { "no-writes" },
})
