-- KEYS: state hash, cell set, cell entries, stamps hash (as status.lua). ARGV: as_of ("" for
-- none, else as in status.lua: one stamp for every item), then four per item: worker id,
-- available (0/1), skills field, version. Items are applied in order, each exactly as status.lua
-- applies one (common.lua `set_worker_status`, the stamp rule included: a worker named twice is
-- stamped by its first item, which its second, carrying the same stamp, passes). Returns one
-- code per item: 1 written, 0 refused as older than the worker's stamp.
local hash, cells, stamps = KEYS[1], KEYS[2], KEYS[4]
local as_of = ARGV[1]
if as_of == "" then as_of = nil end
local out = {}
for i = 2, #ARGV, 4 do
  out[#out + 1] = set_worker_status(hash, cells, stamps, ARGV[i], ARGV[i + 1], ARGV[i + 2],
                                    ARGV[i + 3], as_of)
end
return out
