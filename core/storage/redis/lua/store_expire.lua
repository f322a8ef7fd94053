-- ARGV[3] the cutoff: the session goes only if it was last used before it
local score = redis.call('ZSCORE', SEEN, SID)
if not score or tonumber(score) > tonumber(ARGV[3]) then return 0 end
drop()
redis.call('ZREM', SEEN, SID)
return 1
