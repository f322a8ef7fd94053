-- KEYS: the session's index; ARGV: token, session, created, expires, now, ttl seconds, most active,
-- invite key prefix
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[5])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[7]) then return 0 end
local invite = ARGV[8] .. ARGV[1]
redis.call('HSET', invite, 'session', ARGV[2], 'created', ARGV[3], 'expires', ARGV[4])
redis.call('EXPIRE', invite, ARGV[6])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[6]) then redis.call('EXPIRE', KEYS[1], ARGV[6]) end
return 1
