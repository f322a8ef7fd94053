-- ARGV[3] image id, ARGV[4] 'd' (the original) or 't' (the thumbnail)
local rec = redis.call('HGET', REC, ARGV[3])
if not rec then return false end
return redis.call('HGET', BLOBS, string.sub(rec, 1, SHA_CHARS) .. ':' .. ARGV[4])
