-- ARGV[3..]: quota, cap, record overhead, image id, sha256, name key, stored record, data, thumbnail
settle()
local quota, cap, overhead = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local image_id, sha, name_key = ARGV[6], ARGV[7], ARGV[8]
local same = redis.call('HGET', NAMES, name_key)
if same then
  keep()
  return {'dup', redis.call('HGET', REC, same)}
end
local ids_json = redis.call('HGET', SHAS, sha)
local ids = {}
if ids_json then ids = cjson.decode(ids_json) end
local nbytes = overhead
if #ids == 0 then nbytes = nbytes + #ARGV[10] + #ARGV[11] end
local refusal = room(nbytes, quota, cap)
if refusal then return refusal end
local first = ''
if #ids == 0 then
  redis.call('HSET', BLOBS, sha .. ':d', ARGV[10], sha .. ':t', ARGV[11])
else
  first = redis.call('HGET', REC, ids[1]) or ''
end
ids[#ids + 1] = image_id
redis.call('HSET', SHAS, sha, cjson.encode(ids))
redis.call('HSET', REC, image_id, ARGV[9])
redis.call('RPUSH', ORDER, image_id)
redis.call('HSET', NAMES, name_key, image_id)
account(nbytes, 1)
keep()
return {'ok', first}
