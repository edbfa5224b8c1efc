-- KEYS[1]: state hash; KEYS[2..]: cell sets in ascending lower-bound order.
-- ARGV: lat, lng, radius_m, limit, min_ts, n_skills, skill..., then one lower bound per cell set.
-- Returns a flat list: worker id, distance, lat, lng, ts, ... nearest first (ties by id).
local hash = KEYS[1]
local lat, lng = tonumber(ARGV[1]), tonumber(ARGV[2])
local radius, limit, min_ts = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n_skills = tonumber(ARGV[6])
local need = {}
for i = 1, n_skills do need[i] = ARGV[6 + i] end
local bounds_at = 6 + n_skills - 1  -- bound of KEYS[i] is ARGV[bounds_at + i]

local best, n = {}, 0  -- sorted {d, id, lat, lng, ts}, at most `limit`

local function better(a_d, a_id, b)
  return a_d < b[1] or (a_d == b[1] and a_id < b[2])
end

local function offer(d, id, s)
  if n >= limit and not better(d, id, best[n]) then return end
  local pos = n + 1
  if n >= limit then pos = n; n = n - 1 end
  while pos > 1 and better(d, id, best[pos - 1]) do
    best[pos] = best[pos - 1]
    pos = pos - 1
  end
  best[pos] = {d, id, s[1], s[2], s[3]}
  n = n + 1
end

local function has_skills(s)
  for _, want in ipairs(need) do
    local ok = false
    for _, have in ipairs(s[9]) do
      if have == want then ok = true; break end
    end
    if not ok then return false end
  end
  return true
end

for i = 2, #KEYS do
  if n >= limit and tonumber(ARGV[bounds_at + i]) > best[n][1] then break end
  local members = redis.call("SMEMBERS", KEYS[i])
  for j = 1, #members, 1000 do
    local last = math.min(j + 999, #members)
    local states = redis.call("HMGET", hash, unpack(members, j, last))
    for k = 1, #states do
      local raw = states[k]
      if raw then
        local s = cmsgpack.unpack(raw)
        if s[3] >= min_ts and searchable(s) and has_skills(s) then
          local d = haversine_m(lat, lng, s[1], s[2])
          if d <= radius then offer(d, tonumber(members[j + k - 1]), s) end
        end
      end
    end
  end
end

local out = {}
for i = 1, n do
  local b = best[i]
  out[#out + 1] = b[2]
  out[#out + 1] = string.format("%.17g", b[1])
  out[#out + 1] = string.format("%.17g", b[3])
  out[#out + 1] = string.format("%.17g", b[4])
  out[#out + 1] = string.format("%.17g", b[5])
end
return out
