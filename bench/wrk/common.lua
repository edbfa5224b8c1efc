-- Shared by the ingest benchmark's wrk scripts; each script loads it with dofile.
--
-- Environment (set by bench/ingest.py):
--   BENCH_WRK_DIR  this directory
--   BENCH_TOKENS   "token lat lng" per line, one line per worker
--   BENCH_THREADS  the wrk -t value: thread i takes every BENCH_THREADS-th worker, so no two
--                  threads ever move the same worker
--   BENCH_LASTPOS  optional: done() writes, per worker, "line LAST PREV", where each is
--                  "lat lng ts_ms" (ts_ms "-" when the server stamps the fix) and is the worker's
--                  last and last-but-one fix sent (PREV "- - -" if none); a request still in
--                  flight when wrk stops may never reach the server, hence PREV
--
-- Every script counts responses by status (2xx or not, per code), keeps the first few non-2xx
-- bodies, and done() prints one line, "BENCH_RESULT {json}", which bench/ingest.py parses.

local M = {}

M.M_PER_DEG = 6371008.8 * math.pi / 180

local threads = {}

-- Runs in the main Lua state, once per thread, before the thread's init().
function M.setup(thread)
  thread:set("tid", #threads)
  threads[#threads + 1] = thread
end

-- Runs in each thread's Lua state.
function M.init()
  n2xx, nother, accepted, ignored, rejected = 0, 0, 0, 0, 0
  codes, samples, lastpos, prevpos = {}, {}, {}, {}
  math.randomseed(os.time() + 7919 * (tid or 0))
end

function M.load_workers()
  local path = assert(os.getenv("BENCH_TOKENS"), "BENCH_TOKENS is not set")
  local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
  local mine, line_no = {}, 0
  for line in io.lines(path) do
    line_no = line_no + 1
    if (line_no - 1) % nthreads == (tid or 0) then
      local token, lat, lng = line:match("^(%S+)%s+(%S+)%s+(%S+)")
      lat, lng = tonumber(lat), tonumber(lng)
      mine[#mine + 1] = {
        line = line_no,
        headers = {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"},
        lat = lat,
        lng = lng,
        lng_scale = 1 / math.cos(lat * math.pi / 180),
      }
    end
  end
  assert(#mine > 0, "no workers for this thread in " .. path)
  return mine
end

function M.count(status, body)
  if status >= 200 and status < 300 then
    n2xx = n2xx + 1
    return true
  end
  nother = nother + 1
  local key = tostring(status)
  codes[key] = (codes[key] or 0) + 1
  if #samples < 5 then
    samples[#samples + 1] = key .. " " .. string.sub(body or "", 1, 300)
  end
  return false
end

local function json_string(s)
  s = string.gsub(s, '[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

-- Runs in the main Lua state after the run: sums what the threads counted.
function M.done(summary, latency, requests)
  local totals = {n2xx = 0, nother = 0, accepted = 0, ignored = 0, rejected = 0}
  local all_codes, all_samples, all_last, all_prev = {}, {}, {}, {}
  for _, thread in ipairs(threads) do
    for key in pairs(totals) do
      totals[key] = totals[key] + (thread:get(key) or 0)
    end
    for code, n in pairs(thread:get("codes") or {}) do
      all_codes[code] = (all_codes[code] or 0) + n
    end
    for _, sample in ipairs(thread:get("samples") or {}) do
      all_samples[#all_samples + 1] = sample
    end
    for line, pos in pairs(thread:get("lastpos") or {}) do
      all_last[line] = pos
    end
    for line, pos in pairs(thread:get("prevpos") or {}) do
      all_prev[line] = pos
    end
  end
  local parts = {}
  for key, n in pairs(totals) do
    parts[#parts + 1] = json_string(key) .. ":" .. string.format("%d", n)
  end
  local code_parts = {}
  for code, n in pairs(all_codes) do
    code_parts[#code_parts + 1] = json_string(code) .. ":" .. string.format("%d", n)
  end
  parts[#parts + 1] = '"codes":{' .. table.concat(code_parts, ",") .. "}"
  local sample_parts = {}
  for i, sample in ipairs(all_samples) do sample_parts[i] = json_string(sample) end
  parts[#parts + 1] = '"samples":[' .. table.concat(sample_parts, ",") .. "]"
  io.write("BENCH_RESULT {" .. table.concat(parts, ",") .. "}\n")
  local path = os.getenv("BENCH_LASTPOS")
  if path and path ~= "" then
    local out = assert(io.open(path, "w"))
    for line, pos in pairs(all_last) do
      out:write(string.format("%d %s %s\n", line, pos, all_prev[line] or "- - -"))
    end
    out:close()
  end
end

-- Remember the fix just sent to the worker on `line` (and the one before it).
function M.sent(line, fix)
  prevpos[line] = lastpos[line]
  lastpos[line] = fix
end

-- One single-ping request for the next worker: a point within JITTER_M of the worker's home,
-- no recorded_at (the server stamps it), so every ping is newer than the last one.
local JITTER_M = 2.0

function M.single_ping(path, workers)
  local state = {i = 0}
  local jitter = JITTER_M / M.M_PER_DEG
  return function()
    state.i = state.i % #workers + 1
    local w = workers[state.i]
    local lat = string.format("%.8f", w.lat + (2 * math.random() - 1) * jitter)
    local lng = string.format("%.8f", w.lng + (2 * math.random() - 1) * jitter * w.lng_scale)
    M.sent(w.line, lat .. " " .. lng .. " -")
    return wrk.format("POST", path, w.headers, '{"lat":' .. lat .. ',"lng":' .. lng .. "}")
  end
end

return M
