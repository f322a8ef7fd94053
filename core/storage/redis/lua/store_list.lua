-- the session's records in upload order, read LIST_CHUNK at a time (Lua's stack is bounded)
local ids = redis.call('LRANGE', ORDER, 0, -1)
local out = {}
for i = 1, #ids, LIST_CHUNK do
  local chunk = {}
  for j = i, math.min(i + LIST_CHUNK - 1, #ids) do chunk[#chunk + 1] = ids[j] end
  local found = redis.call('HMGET', REC, unpack(chunk))
  for j = 1, #chunk do
    if found[j] then out[#out + 1] = found[j] end
  end
end
return out
