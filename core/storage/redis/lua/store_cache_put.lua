-- ARGV[3..]: quota, cap, image id, cache name, encoded value, its size in bytes
local quota, cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local image_id, name, nbytes = ARGV[5], ARGV[6], tonumber(ARGV[8])
if redis.call('HEXISTS', REC, image_id) == 0 then return {'nf'} end
local nfield = 'n:' .. image_id .. ':' .. name
local old = redis.call('HGET', CACHE, nfield)
local delta = nbytes - num(old)
if delta > 0 then
  local refusal = room(delta, quota, cap)
  if refusal then return refusal end
end
if not old then
  local names = redis.call('HGET', CACHE, 'i:' .. image_id)
  local list = {}
  if names then list = cjson.decode(names) end
  list[#list + 1] = name
  redis.call('HSET', CACHE, 'i:' .. image_id, cjson.encode(list))
end
redis.call('HSET', CACHE, 'v:' .. image_id .. ':' .. name, ARGV[7], nfield, ARGV[8])
account(delta, 0)
keep()
return {'ok'}
