-- KEYS: state hash, cell set, cell entries. ARGV: worker id, max speed (m/s), fixes, in_area,
-- version: fixes packs lat, lng, ts and the code of the fine cell (geo/live/cells.py cell_code)
-- of each fix as big-endian float64s; in_area has one character per fix, "1" inside the area,
-- "0" outside; version is the profile version the caller's view of the worker comes from, or ""
-- to apply the fixes whatever the record holds.
-- Returns {0, version} and writes nothing when a version is given and the worker's record holds
-- another one (version "", or false when there is no record): the caller's view is out of date.
-- Otherwise fixes are applied in order (common.lua `move_worker`); returns one code per fix:
-- 1 accepted, 2 stale, 3 too fast, then -1 when the worker entered a fine cell whose parent has
-- no entry in KEYS[3] yet (the caller writes the entries above that cell, cells.py `chain`).
local inside = ARGV[4]
local codes, more = move_worker(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]), ARGV[3],
                                1, inside, 1, #inside, ARGV[5])
if not codes then return { 0, more } end -- more: the version the record holds
if more then codes[#codes + 1] = -1 end -- more: the worker entered a cell with no entry yet
return codes
