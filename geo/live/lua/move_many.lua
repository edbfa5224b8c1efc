-- KEYS: state hash, cell set, cell entries (as move.lua). ARGV: max speed (m/s), fixes, in_area,
-- then one worker id per item: item i is worker ARGV[3 + i]'s one fix, packed as in move.lua
-- (lat, lng, ts, fine cell code: 32 bytes at 32 * (i - 1) + 1 of fixes) with in_area's i-th
-- character. Items are applied in order, each as move.lua applies one fix with no version
-- (common.lua `move_worker`), so a worker named twice sees its first item applied before its
-- second. Returns one code per item: 1 accepted, 2 stale, 3 too fast, 4 accepted into a fine
-- cell whose parent has no entry in KEYS[3] yet (the caller writes the entries above it).
local hash, cells, entries = KEYS[1], KEYS[2], KEYS[3]
local max_speed, fixes, inside = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local out = {}
for i = 1, #inside do
  local codes, fresh_cell = move_worker(hash, cells, entries, ARGV[3 + i], max_speed, fixes,
                                        32 * i - 31, inside, i, 1, nil)
  out[i] = fresh_cell and 4 or codes[1]
end
return out
