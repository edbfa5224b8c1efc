-- KEYS: state hash, cell set (, cell entries). ARGV: worker id. Forgets the worker.
local hash, cells, wid = KEYS[1], KEYS[2], ARGV[1]
local lat, lng, ts, available, in_area, cell, skills = decode(redis.call("HGET", hash, wid))
refile(cells, wid, is_searchable(ts, available, in_area), cell, skills, false, cell, skills)
redis.call("HDEL", hash, wid)
return 1
