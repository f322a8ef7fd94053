-- ARGV[3] record overhead, ARGV[4] image id
local image_id = ARGV[4]
local rec = redis.call('HGET', REC, image_id)
if not rec then return 0 end
local sha, name_key = string.sub(rec, 1, SHA_CHARS), string.sub(rec, 1, NAME_KEY_CHARS)
local released = tonumber(ARGV[3]) + release_cache(image_id) + redis.call('HSTRLEN', ANN, image_id)
redis.call('HDEL', ANN, image_id)
redis.call('HDEL', REC, image_id)
redis.call('LREM', ORDER, 1, image_id)
redis.call('HDEL', NAMES, name_key)
local kept = {}
for _, id in ipairs(cjson.decode(redis.call('HGET', SHAS, sha) or '[]')) do
  if id ~= image_id then kept[#kept + 1] = id end
end
if #kept == 0 then
  released = released + redis.call('HSTRLEN', BLOBS, sha .. ':d') + redis.call('HSTRLEN', BLOBS, sha .. ':t')
  redis.call('HDEL', BLOBS, sha .. ':d', sha .. ':t')
  redis.call('HDEL', SHAS, sha)
else
  redis.call('HSET', SHAS, sha, cjson.encode(kept))
end
account(-released, -1)
keep()
return 1
