-- KEYS: the session's index; ARGV: token, session, invite key prefix
local invite = ARGV[3] .. ARGV[1]
if redis.call('HGET', invite, 'session') ~= ARGV[2] then return 0 end
redis.call('DEL', invite)
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
