-- KEYS: state hash, cell set, cell entries, stamps hash. ARGV: worker id, available (0/1),
-- skills field (msgpack str32 ",a,b,"), version (decimal digits: the worker's profile version this
-- status comes from), as_of (optional: microseconds on Redis's clock, taken before the status was
-- read; refused, returning 0, if the worker's stamp here is later). The position is kept
-- (common.lua `set_worker_status`).
return set_worker_status(KEYS[1], KEYS[2], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
