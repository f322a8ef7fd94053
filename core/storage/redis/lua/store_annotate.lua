-- ARGV[3..]: quota, cap, image id, the annotations read before (compare), the new ones ('' = none)
local quota, cap, image_id = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
if redis.call('HEXISTS', REC, image_id) == 0 then return {'nf'} end
local current = redis.call('HGET', ANN, image_id) or ''
if current ~= ARGV[6] then return {'retry'} end
local delta = #ARGV[7] - #current
if delta > 0 then
  local refusal = room(delta, quota, cap)
  if refusal then return refusal end
end
if ARGV[7] == '' then redis.call('HDEL', ANN, image_id) else redis.call('HSET', ANN, image_id, ARGV[7]) end
account(delta, 0)
keep()
return {'ok'}
