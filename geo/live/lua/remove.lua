-- KEYS: state hash, cell set, cell entries, stamps hash. ARGV: worker id, as_of (optional, as
-- in status.lua: nothing is done if the worker's stamp is later; else the stamp is kept, so an
-- older status cannot bring the worker back). Forgets the worker.
local hash, cells, wid = KEYS[1], KEYS[2], ARGV[1]
if older_than_stamp(KEYS[4], wid, ARGV[2]) then return 0 end
local lat, lng, ts, available, in_area, cell, skills = decode(redis.call("HGET", hash, wid))
refile(cells, wid, is_searchable(ts, available, in_area), cell, skills, false, cell, skills)
redis.call("HDEL", hash, wid)
return 1
