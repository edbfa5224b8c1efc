-- KEYS[1]: state hash. ARGV: prefix, worker id, available (0/1), skill...
local hash, prefix, wid = KEYS[1], ARGV[1], ARGV[2]
local old = load_state(hash, wid) or empty_state()
local new = copy(old)
new[4] = tonumber(ARGV[3])
local skills = {}
for i = 4, #ARGV do skills[#skills + 1] = ARGV[i] end
new[9] = skills
refile(prefix, wid, old, new)
redis.call("HSET", hash, wid, cmsgpack.pack(new))
return 1
