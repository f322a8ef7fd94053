local alive = redis.call('EXISTS', META)
local count = drop()
redis.call('ZREM', SEEN, SID)
if alive == 1 then return count end
return 0
