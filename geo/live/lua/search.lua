-- The search, as a Redis function library (FUNCTION LOAD once, FCALL per search): the helpers and
-- constant tables below are created when the library loads, not on every call. RedisLiveIndex
-- puts the "#!lua name=..." line and `local FUNCTION_NAME = "..."` before this text. Unlike the
-- other scripts, this one does not get common.lua prepended (a library cannot reach `struct` while
-- it loads), so it repeats the few constants it shares with it.
--
-- FCALL <name> 3 <state hash> <cell set> <cell entries> lat lng radius_m limit min_ts n_skills
-- skill... start_res start_cells (anything after is ignored). Returns {positions, id, id, ...},
-- nearest first (ties by id); positions packs the distance, lat, lng and ts of each result as
-- big-endian float64s.
--
-- Best-first walk of the H3 cells (geo/live/cells.py) in the sorted set of the workers with a
-- requested skill (or of all), scored by their fine cell's code, where any cell is one range of
-- codes: start from the cells Python picked (start_res, and the first fine code, centre lat, lng
-- and reach of each, packed as float64s); always take the cell with the smallest lower bound on
-- its distance from the point (the distance to its centre less its reach); split it into its
-- children if it holds more than LEAF workers (their centres and reaches from its entry in the
-- cell entries), else fetch its ids; read the fetched workers' records in batches, keeping the
-- nearest `limit`; stop when the next bound exceeds the radius or the limit-th distance found.
-- A cell to split whose entry is missing is read whole.
local EARTH_RADIUS_M = 6371008.8 -- common.lua
local PI = 3.141592653589793 -- math.pi
local RAD = PI / 180
local M_PER_DEG = RAD * EARTH_RADIUS_M
local ENTRY = ">ddddddddddddddddddddd" -- cells.py ENTRY: 21 float64s
local TWO_R = 2 * EARTH_RADIUS_M
local FINE_RES = 10 -- geo/live/cells.py FINE_RES
local POSITION = ">xxdxdxd" -- lat, lng, ts of a record (common.lua)
local SKILL_TEXT_AT = 45 -- offset of a record's skills text (common.lua)
-- Library functions: no global is reachable while a library loads, so these are bound by the
-- first call.
local sin, cos, asin, sqrt, min
local find, format, rep, concat, insert, unpack_, tonumber_, call, sunpack, spack

local function bind()
  sin, cos, asin, sqrt = math.sin, math.cos, math.asin, math.sqrt
  min = math.min
  find, format, rep, concat = string.find, string.format, string.rep, table.concat
  insert, unpack_, tonumber_ = table.insert, unpack, tonumber
  call, sunpack, spack = redis.call, struct.unpack, struct.pack
end

-- A cell is fetched whole when it holds at most LEAF workers, else split into its children.
-- Whether it does is known from ZCOUNT, or guessed from its parent's count (a seventh of it):
-- a cell guessed to hold more than DENSE is split without counting, one guessed to hold at most
-- SPARSE is fetched right away (LIMIT LEAF + 1: too many back means split, and count, after all).
local LEAF, DENSE, SPARSE = 32, 128, 16
local LEAF_LIMIT = "33" -- LEAF + 1
local BATCH = 32 -- records to read at once (fewer HMGET calls)
-- Per resolution: fine codes per cell (8^(FINE_RES - res)).
local SPAN = {}
for res = 0, FINE_RES do SPAN[res] = 8 ^ (FINE_RES - res) end

-- The query, set by each call.
local hash, zset, entries, qlat, qlng, radius, limit, min_ts
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

-- A lower bound on the distance from the query point to any point within `reach` of (lat, lng),
-- less a margin for rounding: computed distances are good to ~1e-9 m plus ~1e-15 relative (the
-- haversine loses accuracy only towards antipodal points, beyond 1e7 m).
local function bound(lat, lng, reach)
  local d = distance(lat, lng)
  local b = d - reach
  if b <= 0 then return 0 end
  if d > 1e7 then return b - 1 end
  return b - d * 1e-9 - 1e-6
end

-- A cell's entry (its children's centres and reaches): {lat, lng, reach} x 7, or nil.
local function entry_of(res, first)
  local raw = call("HGET", entries, spack(">Bd", res, first))
  return raw and { sunpack(ENTRY, raw) }
end

-- The heap of cells to visit, by bound: {bound, res, first fine code, guessed count or -1}.
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

-- Start cells: those Python picked (all of one resolution), each with its centre and reach.
local function start(res, packed)
  for at = 1, #packed, 32 do
    local first, lat, lng, reach = sunpack(">dddd", packed, at)
    local b = bound(lat, lng, reach)
    if b <= radius then push({ b, res, first, -1 }) end
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

-- Read a cell's ids whole.
local function read(first, res)
  add(call("ZRANGEBYSCORE", zset, format("%d", first), format("%d", first + SPAN[res] - 1)))
end

-- Split a cell: its children within the cut-off, each guessed to hold `guess` (read it whole if
-- it has no entry).
local function split(cell, cut, guess)
  local res, first = cell[2], cell[3]
  local e = entry_of(res, first)
  if not e then
    read(first, res)
    return nil
  end
  local span = SPAN[res + 1]
  for d = 0, 6 do
    local k = 3 * d
    local reach = e[k + 3]
    if reach >= 0 then
      local b = bound(e[k + 1], e[k + 2], reach)
      if b <= cut then take({ b, res + 1, first + d * span, guess }) end
    end
  end
  return nearest_child()
end

-- Visit a cell: read it (its ids join the pending ones) or split it. Returns the child to visit
-- next, if any.
local function visit(cell, cut)
  local res, first, guess = cell[2], cell[3], cell[4]
  local lo, hi = format("%d", first), format("%d", first + SPAN[res] - 1)
  if res == FINE_RES then
    add(call("ZRANGEBYSCORE", zset, lo, hi))
  elseif guess > DENSE then
    return split(cell, cut, guess / 7)
  elseif guess >= 0 and guess <= SPARSE then
    local ids = call("ZRANGEBYSCORE", zset, lo, hi, "LIMIT", "0", LEAF_LIMIT)
    if #ids > LEAF then return split(cell, cut, -1) end
    add(ids)
  else
    local count = call("ZCOUNT", zset, lo, hi)
    if count > LEAF then
      return split(cell, cut, count / 7)
    elseif count > 0 then
      add(call("ZRANGEBYSCORE", zset, lo, hi))
    end
  end
  return nil
end

local function search(keys, args)
  if not call then bind() end
  hash, entries = keys[1], keys[3]
  local cells = keys[2]
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
    start(tonumber_(args[7 + n_skills]), args[8 + n_skills])
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
