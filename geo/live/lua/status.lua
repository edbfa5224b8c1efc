-- KEYS: state hash, cell set, cell entries, stamps hash. ARGV: worker id, available (0/1),
-- skills field (msgpack str32 ",a,b,"), version (decimal digits: the worker's profile version this
-- status comes from), as_of (optional: microseconds on Redis's clock, taken before the status was
-- read; refused, returning 0, if the worker's stamp here is later). The position is kept.
local hash, cells, wid = KEYS[1], KEYS[2], ARGV[1]
if older_than_stamp(KEYS[4], wid, ARGV[5]) then return 0 end
local lat, lng, ts, available, in_area, cell, skills = decode(redis.call("HGET", hash, wid))
local was = is_searchable(ts, available, in_area)
available = tonumber(ARGV[2])
refile(cells, wid, was, cell, skills, is_searchable(ts, available, in_area), cell, ARGV[3])
local record = encode(lat, lng, ts, available, in_area, cell, ARGV[3], ARGV[4] or "")
redis.call("HSET", hash, wid, record)
return 1
